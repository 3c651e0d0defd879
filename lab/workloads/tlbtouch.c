// SPDX-License-Identifier: GPL-2.0-only
/*
 * tlbtouch - read one word from each of N distinct pages, pass after pass; optionally clear a
 * 4 KiB buffer with one `rep stosl` K times. The cost model's calibration workload (issue 12,
 * docs/cost-model.md), not a cost figure.
 *
 * Touching N pages round-robin gives a modelled TLB miss on every access once N exceeds the
 * modelled TLB's reach (LRU, set-associative), and none below it, apart from the first pass.
 * --clears K adds K clears of one page-aligned 4 KiB buffer with `rep stosl` (ecx = 1024): the
 * cost plugin must count K rep instructions, 1,024 K iterations and 4,096 K bytes for them.
 *
 * Usage: tlbtouch [--pages N] [--passes P] [--clears K]
 *   --pages N    distinct pages touched per pass (1..65536, default 64)
 *   --passes P   passes over the pages (1..1000, default 20)
 *   --clears K   4 KiB rep stosl clears after the passes (0..100000, default 0)
 *
 * Self-check: every page is written with its index first (a write fault each); the passes
 * read them back, and the sum must be what was written; the cleared buffer must read zero.
 *
 * Output: one JSON line, e.g. {"workload":"tlbtouch","unit":"touch","ops":1280,"errors":0,
 * "elapsed_ns":123,"params":{"pages":64,"passes":20,"clears":0}}; ops = pages * passes.
 * Exit 0 if errors == 0, 1 otherwise, 2 on bad arguments.
 * Built static for i386: gcc -m32 -static -O2 -Wall -Wextra tlbtouch.c
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "workload.h"

#define PAGE 4096UL

static struct param params[] = PARAM_TABLE;

static void print_usage(FILE *f)
{
	fprintf(f, "usage: tlbtouch [--pages N] [--passes P] [--clears K]\n");
}

static uint32_t clear_buf[PAGE / 4] __attribute__((aligned(4096)));

static void rep_stosl_page(uint32_t *dst)
{
#if defined(__i386__) || defined(__x86_64__)
	void *d = dst;
	unsigned long n = PAGE / 4;

	__asm__ __volatile__("cld; rep stosl" : "+D"(d), "+c"(n) : "a"(0) : "memory");
#else
	memset(dst, 0, PAGE);
#endif
}

int main(int argc, char **argv)
{
	unsigned long pages, passes, clears, p, i, errors = 0;
	unsigned long long sum = 0, want;
	volatile uint32_t *region;
	long long t0, t1;

	parse_params("tlbtouch", params, ARRAY_SIZE(params), argc, argv, print_usage, NULL);
	pages = params[PARAM_PAGES].value;
	passes = params[PARAM_PASSES].value;
	clears = params[PARAM_CLEARS].value;

	region = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	if (region == MAP_FAILED) {
		fprintf(stderr, "tlbtouch: mmap: %s\n", strerror(errno));
		return 1;
	}
	t0 = now_ns();
	for (p = 0; p < pages; p++)
		region[p * (PAGE / 4)] = (uint32_t)p;
	for (i = 0; i < passes; i++)
		for (p = 0; p < pages; p++)
			sum += region[p * (PAGE / 4)];
	clear_buf[7] = 1;	/* fault it in before the clears */
	for (i = 0; i < clears; i++) {
		clear_buf[PAGE / 4 - 1] = 1;
		rep_stosl_page(clear_buf);
	}
	t1 = now_ns();
	want = (unsigned long long)passes * pages * (pages - 1) / 2;
	if (sum != want) {
		fprintf(stderr, "tlbtouch: read back %llu, wrote %llu\n", sum, want);
		errors++;
	}
	if (clears && (clear_buf[0] || clear_buf[PAGE / 4 - 1])) {
		fprintf(stderr, "tlbtouch: the rep stosl clear left data behind\n");
		errors++;
	}
	printf("{\"workload\":\"tlbtouch\",\"unit\":\"touch\",\"ops\":%llu,\"errors\":%lu,"
	       "\"elapsed_ns\":%lld,\"params\":{\"pages\":%lu,\"passes\":%lu,\"clears\":%lu}}\n",
	       (unsigned long long)pages * passes, errors, t1 - t0, pages, passes, clears);
	return errors ? 1 : 0;
}

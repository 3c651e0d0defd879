// SPDX-License-Identifier: GPL-2.0-only
/*
 * faultstorm - processes fault in fresh anonymous memory, one page at a time.
 *
 * Stresses: the anonymous page-fault path. The first write to each page of a
 * fresh private anonymous mapping takes one fault (do_anonymous_page), which
 * maps the PTE page with pte_offset_map (a highmem kmap with HIGHPTE) and
 * allocates a zeroed data page; every 2 MiB of touched address space also
 * allocates a PTE page (__pte_alloc), so each process allocates about
 * --mib / 2 PTE pages per pass. munmap at the end of each pass zaps the PTEs,
 * frees the PTE pages and flushes the TLB, so the next pass faults again.
 * Transparent huge pages are turned off on the region (MADV_NOHUGEPAGE): the
 * Debian 686-pae kernel defaults THP to "always", which would map whole
 * 2 MiB pages with no PTE page and one fault per 512 pages.
 *
 * Usage: faultstorm [--procs P] [--mib M] [--passes N]
 *   --procs P     processes faulting at the same time (1..64, default 4)
 *   --mib M       MiB each process maps and writes in a pass (1..512,
 *                 default 16)
 *   --passes N    map/write/verify/unmap passes per process (1..16, default 1)
 * procs * mib must fit in the guest's free memory, or the OOM killer ends
 * the run (a killed process counts as an error).
 *
 * Self-check: each process writes a pattern derived from (process, pass,
 * page) into word 0 of every page, then reads every page back: word 0 must
 * hold the pattern and the last word of the page must still be zero (a fresh
 * anonymous page is zero-filled and private). Each process sends its page
 * and mismatch counts to the parent over a pipe; mismatches, failed mmaps,
 * processes that die or send no counts, and fork failures are errors.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"workload":"faultstorm","unit":"fault","ops":16384,"errors":0,
 *    "elapsed_ns":123456789,"params":{"procs":4,"mib":16,"passes":1},
 *    "nohugepage":true}
 * (on one line); ops counts pages written, one fault each. "nohugepage" is
 * false when the kernel has no THP (MADV_NOHUGEPAGE gives EINVAL: nothing to
 * turn off). Exit 0 if errors == 0, 1 otherwise, 2 on bad arguments.
 * Built static for i386: gcc -m32 -static -O2 -Wall -Wextra faultstorm.c
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workload.h"

#define CHILD_FAILED		3	/* mismatches or mmap failure, see record */

#define MIB			(1024UL * 1024UL)

static struct param params[] = {
	{ "procs",   4, 1,  64 },
	{ "mib",    16, 1, 512 },
	{ "passes",  1, 1,  16 },
};

/* What each process sends the parent: one write, atomic on a pipe. */
struct result {
	uint32_t proc;
	uint32_t pages;		/* pages written, over all passes */
	uint32_t bad;		/* mismatched pages and failed mmaps */
	uint32_t nohuge;	/* MADV_NOHUGEPAGE accepted */
};

static void print_usage(FILE *f)
{
	fprintf(f, "usage: faultstorm [--procs P] [--mib M] [--passes N]\n");
}

/* Never zero, and different for every (process, pass, page). */
static inline uint32_t pattern(unsigned long proc, unsigned long pass,
			       unsigned long page)
{
	return ((uint32_t)(proc + 1) * 0x9e3779b1u ^
		(uint32_t)(pass + 1) * 0x85ebca6bu ^ (uint32_t)page << 1) | 1u;
}

/* One pass: map, write every page, verify, unmap. Returns mismatches. */
static uint32_t one_pass(unsigned long proc, unsigned long pass,
			 unsigned long npages, size_t page_size,
			 struct result *res)
{
	size_t wpp = page_size / sizeof(uint32_t), len = npages * page_size;
	uint32_t bad = 0;
	uint32_t *region;
	unsigned long i;
	void *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "faultstorm: process %lu: mmap %lu MiB: %s\n",
			proc, (unsigned long)(len / MIB), strerror(errno));
		return 1;
	}
	region = p;
	if (!madvise(p, len, MADV_NOHUGEPAGE))
		res->nohuge = 1;
	else if (errno != EINVAL)	/* EINVAL: kernel without THP */
		fprintf(stderr, "faultstorm: madvise: %s\n", strerror(errno));

	for (i = 0; i < npages; i++)
		region[i * wpp] = pattern(proc, pass, i);
	res->pages += npages;
	barrier();
	for (i = 0; i < npages; i++)
		if (region[i * wpp] != pattern(proc, pass, i) ||
		    region[i * wpp + wpp - 1] != 0)
			bad++;
	if (bad)
		fprintf(stderr, "faultstorm: process %lu pass %lu: %u pages wrong\n",
			proc, pass, bad);
	munmap(p, len);
	return bad;
}

static int child_main(unsigned long proc, unsigned long npages,
		      unsigned long passes, size_t page_size, int out)
{
	struct result res = { .proc = (uint32_t)proc };
	unsigned long pass;

	for (pass = 0; pass < passes; pass++)
		res.bad += one_pass(proc, pass, npages, page_size, &res);
	if (write(out, &res, sizeof(res)) != sizeof(res))
		return CHILD_FAILED;
	return res.bad ? CHILD_FAILED : 0;
}

int main(int argc, char **argv)
{
	unsigned long procs, mib, passes, npages, i, errors = 0;
	unsigned long long ops = 0;
	unsigned char seen[64] = { 0 };
	pid_t pids[64] = { 0 };
	size_t page_size;
	struct result res;
	int fds[2], nohuge = 0;
	long long t0, t1;
	ssize_t n;

	parse_params("faultstorm", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	procs = params[0].value;
	mib = params[1].value;
	passes = params[2].value;
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	npages = mib * (MIB / page_size);

	if (pipe(fds)) {
		fprintf(stderr, "faultstorm: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);	/* children must not inherit buffered output */

	t0 = now_ns();
	for (i = 0; i < procs; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(fds[0]);
			_exit(child_main(i, npages, passes, page_size, fds[1]));
		}
		if (pids[i] < 0) {
			fprintf(stderr, "faultstorm: fork: %s\n", strerror(errno));
			errors++;
		}
	}
	close(fds[1]);	/* EOF once the last child has exited */
	while ((n = read(fds[0], &res, sizeof(res))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(res) || res.proc >= procs || seen[res.proc]) {
			fprintf(stderr, "faultstorm: bad record from a child\n");
			errors++;
			break;
		}
		seen[res.proc] = 1;
		ops += res.pages;
		errors += res.bad;
		nohuge |= res.nohuge;
	}
	errors += reap_all("faultstorm", pids, procs, seen, CHILD_FAILED);
	t1 = now_ns();

	printf("{\"workload\":\"faultstorm\",\"unit\":\"fault\",");
	printf("\"ops\":%llu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       ops, errors, t1 - t0);
	printf("\"params\":{\"procs\":%lu,\"mib\":%lu,\"passes\":%lu},",
	       procs, mib, passes);
	printf("\"nohugepage\":%s}\n", nohuge ? "true" : "false");
	return errors ? 1 : 0;
}

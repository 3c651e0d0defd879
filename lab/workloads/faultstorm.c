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
 *   --procs P     processes faulting at the same time
 *   --mib M       MiB each process maps and writes in a pass
 *   --passes N    map/write/verify/unmap passes per process
 * (defaults and bounds: faultstorm.toml)
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
 * Built static for i386 by lab/guest/image.py (see workload.h).
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

static struct param params[] = PARAM_TABLE;

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

struct run {
	unsigned long npages, passes;
	size_t page_size;
	unsigned long long ops;
	unsigned long errors;
	int nohuge;
};

/* One process of the crew: its passes, then its record to the parent. */
static int child_main(unsigned long proc, int out, void *arg)
{
	const struct run *run = arg;
	struct result res = { .proc = (uint32_t)proc };
	unsigned long pass;

	for (pass = 0; pass < run->passes; pass++)
		res.bad += one_pass(proc, pass, run->npages, run->page_size,
				    &res);
	if (write(out, &res, sizeof(res)) != sizeof(res))
		return CHILD_FAILED;
	return res.bad ? CHILD_FAILED : 0;
}

static void add_result(const void *rec, void *arg)
{
	const struct result *res = rec;
	struct run *run = arg;

	run->ops += res->pages;
	run->errors += res->bad;
	run->nohuge |= res->nohuge;
}

int main(int argc, char **argv)
{
	unsigned char seen[PARAM_PROCS_MAX] = { 0 };
	pid_t pids[PARAM_PROCS_MAX] = { 0 };
	struct crew crew = { "faultstorm", 0, pids, seen, { -1, -1 } };
	unsigned long procs, mib, passes;
	struct run run = { 0 };
	struct result res;
	long long t0, t1;

	parse_params("faultstorm", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	procs = params[PARAM_PROCS].value;
	mib = params[PARAM_MIB].value;
	passes = params[PARAM_PASSES].value;
	run.page_size = (size_t)sysconf(_SC_PAGESIZE);
	run.npages = mib * (MIB / run.page_size);
	run.passes = passes;
	crew.n = procs;

	if (pipe(crew.fds)) {
		fprintf(stderr, "faultstorm: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);	/* children must not inherit buffered output */

	t0 = now_ns();
	run.errors += crew_fork(&crew, child_main, &run);
	run.errors += crew_collect(&crew, &res, sizeof(res), add_result, &run,
				   CHILD_FAILED, 0, 0);
	t1 = now_ns();

	printf("{\"workload\":\"faultstorm\",\"unit\":\"fault\",");
	printf("\"ops\":%llu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       run.ops, run.errors, t1 - t0);
	printf("\"params\":{\"procs\":%lu,\"mib\":%lu,\"passes\":%lu},",
	       procs, mib, passes);
	printf("\"nohugepage\":%s}\n", run.nohuge ? "true" : "false");
	return run.errors ? 1 : 0;
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * forkstorm - fork many children from a parent with a pre-faulted region.
 *
 * Stresses: page-table copy and teardown. The parent maps an anonymous region
 * of --touch pages and writes every page, so each fork() really copies PTEs
 * (copy_pte_range maps the source and destination PTE pages: with HIGHPTE
 * those are highmem kmaps), each child's writes take COW faults, and each
 * exit frees the child's page tables and flushes its TLB entries.
 *
 * Usage: forkstorm [--procs N] [--touch PAGES] [--concurrency C]
 *   --procs N          total forks, the unit of work
 *   --touch PAGES      pages each child writes
 *   --concurrency C    most children alive at once
 * (defaults and bounds: forkstorm.toml)
 *
 * Self-check: word 0 of page i holds a parent pattern. Each child checks that
 * pattern on every page before writing its own value there (a COW fault), then
 * reads all its values back; it exits 0 only if both checks pass. After the
 * last child the parent checks its own pattern is intact. Fork failures and
 * failed children are counted as errors.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"workload":"forkstorm","unit":"fork","ops":1000,"errors":0,
 *    "elapsed_ns":123456789,"params":{"procs":1000,"touch":16,"concurrency":4}}
 * (on one line). Exit 0 if errors == 0, 1 otherwise, 2 on bad arguments.
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

#define CHILD_BAD_PATTERN	3	/* parent's pattern missing before write */
#define CHILD_BAD_READBACK	4	/* child's own write did not stick */

static struct param params[] = PARAM_TABLE;

static void print_usage(FILE *f)
{
	fprintf(f, "usage: forkstorm [--procs N] [--touch PAGES] [--concurrency C]\n");
}

static inline uint32_t parent_word(unsigned long page)
{
	return 0x3c000000u | (uint32_t)page;		/* top bit clear */
}

static inline uint32_t child_word(unsigned long child, unsigned long page)
{
	return 0x80000000u | (uint32_t)(child & 0x7fff) << 16 |
	       (uint32_t)(page & 0xffff);		/* top bit set */
}

/* Runs in the child: COW-write one word per page and verify. */
static int child_work(uint32_t *region, size_t words_per_page,
		      unsigned long npages, unsigned long child)
{
	unsigned long i;

	for (i = 0; i < npages; i++) {
		uint32_t *w = region + i * words_per_page;

		if (*w != parent_word(i))
			return CHILD_BAD_PATTERN;
		*w = child_word(child, i);
	}
	barrier();
	for (i = 0; i < npages; i++)
		if (region[i * words_per_page] != child_word(child, i))
			return CHILD_BAD_READBACK;
	return 0;
}

struct run {
	uint32_t *region;
	size_t words_per_page;
	unsigned long npages;
	unsigned long ops, errors, fork_errors;
};

static pid_t start_child(unsigned long i, void *arg)
{
	const struct run *run = arg;
	pid_t pid = fork();

	if (pid == 0)
		_exit(child_work(run->region, run->words_per_page,
				 run->npages, i));
	return pid;
}

static void fork_failed(unsigned long i, int err, void *arg)
{
	struct run *run = arg;

	(void)i;
	if (!run->fork_errors)
		fprintf(stderr, "forkstorm: fork: %s\n", strerror(err));
	run->fork_errors++;
}

/* Every child reaped is a fork done; a failed one is an error too. */
static int reaped(pid_t pid, int status, void *arg)
{
	struct run *run = arg;

	run->ops++;
	run->errors += child_failed("forkstorm", pid, status);
	return 1;
}

int main(int argc, char **argv)
{
	unsigned long procs, npages, concurrency, i;
	struct run run = { 0 };
	struct stream stream = {
		.start = start_child, .start_failed = fork_failed,
		.reaped = reaped, .arg = &run,
	};
	uint32_t *region = NULL;
	size_t page_size, words_per_page;
	long long t0, t1;

	parse_params("forkstorm", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	procs = params[PARAM_PROCS].value;
	npages = params[PARAM_TOUCH].value;
	concurrency = params[PARAM_CONCURRENCY].value;
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	words_per_page = page_size / sizeof(uint32_t);

	if (npages) {
		void *p = mmap(NULL, npages * page_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED) {
			fprintf(stderr, "forkstorm: mmap %lu pages: %s\n",
				npages, strerror(errno));
			return 1;
		}
		region = p;
		/* Pre-fault: fork must copy these PTEs, not skip an empty range. */
		for (i = 0; i < npages; i++)
			region[i * words_per_page] = parent_word(i);
	}
	run.region = region;
	run.words_per_page = words_per_page;
	run.npages = npages;
	stream.total = procs;
	stream.concurrency = concurrency;
	fflush(NULL);	/* children must not inherit buffered output */

	t0 = now_ns();
	run_stream(&stream);
	t1 = now_ns();

	for (i = 0; i < npages; i++) {
		if (region[i * words_per_page] != parent_word(i)) {
			fprintf(stderr, "forkstorm: parent page %lu changed\n", i);
			run.errors++;
			break;
		}
	}
	run.errors += run.fork_errors;

	printf("{\"workload\":\"forkstorm\",\"unit\":\"fork\",");
	printf("\"ops\":%lu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       run.ops, run.errors, t1 - t0);
	printf("\"params\":{\"procs\":%lu,\"touch\":%lu,\"concurrency\":%lu}}\n",
	       procs, npages, concurrency);
	return run.errors ? 1 : 0;
}

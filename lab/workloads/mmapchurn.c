// SPDX-License-Identifier: GPL-2.0-only
/*
 * mmapchurn - threads map, write, protect, check and unmap small regions.
 *
 * Stresses: TLB flushing. Each iteration of each thread maps --pages pages,
 * writes one word per page (a fault each: pte_offset_map, a highmem kmap with
 * HIGHPTE), makes the region read-only with mprotect (PTEs changed in place:
 * flush_tlb_mm_range), reads the words back and unmaps the region (PTEs
 * zapped and flushed; the PTE page is freed when it empties). The threads of
 * one process share an mm, so with two or more vCPUs a flush must reach the
 * other CPUs running it (remote shootdowns, IPIs); different processes add
 * context switches between mms.
 *
 * Usage: mmapchurn [--procs P] [--threads T] [--iters N] [--pages K]
 *   --procs P      processes
 *   --threads T    threads per process, all churning
 *   --iters N      map/unmap iterations per thread
 *   --pages K      pages per mapping
 * (defaults and bounds: mmapchurn.toml)
 *
 * Self-check: every thread writes a pattern derived from (process, thread,
 * iteration, page) and checks it after the mprotect, before the munmap, so a
 * stale TLB entry or a page from another mapping would show as a mismatch.
 * Each process sends its counts to the parent over a pipe. Mismatches, failed
 * mmap/mprotect/munmap calls, failed thread creation, processes that die or
 * send no counts, and fork failures are errors.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"workload":"mmapchurn","unit":"munmap","ops":4000,"errors":0,
 *    "elapsed_ns":123456789,"params":{"procs":2,"threads":2,"iters":1000,
 *    "pages":8}}
 * (on one line); ops counts successful munmaps (procs * threads * iters when
 * all is well). Exit 0 if errors == 0, 1 otherwise, 2 on bad arguments.
 * Built static for i386 by lab/guest/image.py (see workload.h); glibc 2.34
 * and later has pthreads in libc: no -pthread needed.
 */
#include <errno.h>
#include <pthread.h>
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

#define CHILD_FAILED		3	/* errors, see record */

#define MAX_PROCS		PARAM_PROCS_MAX
#define MAX_THREADS		PARAM_THREADS_MAX
#define THREAD_STACK		(256 * 1024)

static struct param params[] = PARAM_TABLE;

/* What each process sends the parent: one write, atomic on a pipe. */
struct result {
	uint32_t proc;
	uint32_t ops;
	uint32_t errors;
};

struct worker {
	pthread_t tid;
	pthread_barrier_t *start;
	unsigned long proc;
	unsigned long thread;
	unsigned long iters;
	unsigned long pages;
	size_t page_size;
	unsigned long ops;
	unsigned long errors;
};

static void print_usage(FILE *f)
{
	fprintf(f, "usage: mmapchurn [--procs P] [--threads T] [--iters N] [--pages K]\n");
}

/* Never zero, and different for every (process, thread, iteration, page). */
static inline uint32_t pattern(const struct worker *w, unsigned long iter,
			       unsigned long page)
{
	return ((uint32_t)(w->proc << 6 | w->thread) * 0x9e3779b1u ^
		(uint32_t)iter * 0x85ebca6bu ^ (uint32_t)page << 1) | 1u;
}

/* Count an error; print only the first few of each thread. */
static void report_error(struct worker *w, const char *what, unsigned long iter)
{
	if (w->errors++ < 3)
		fprintf(stderr, "mmapchurn: process %lu thread %lu iteration %lu: %s%s%s\n",
			w->proc, w->thread, iter, what, errno ? ": " : "",
			errno ? strerror(errno) : "");
}

static void *churn(void *arg)
{
	struct worker *w = arg;
	size_t wpp = w->page_size / sizeof(uint32_t);
	size_t len = w->pages * w->page_size;
	uint32_t *region;
	unsigned long it, i;
	int bad;
	void *p;

	pthread_barrier_wait(w->start);
	for (it = 0; it < w->iters; it++) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			report_error(w, "mmap", it);
			continue;
		}
		region = p;
		for (i = 0; i < w->pages; i++)
			region[i * wpp] = pattern(w, it, i);
		if (mprotect(p, len, PROT_READ))
			report_error(w, "mprotect", it);
		barrier();
		bad = 0;
		for (i = 0; i < w->pages; i++)
			bad |= region[i * wpp] != pattern(w, it, i);
		if (bad) {
			errno = 0;
			report_error(w, "data mismatch before munmap", it);
		}
		if (munmap(p, len))
			report_error(w, "munmap", it);
		else
			w->ops++;
	}
	return NULL;
}

struct run {
	unsigned long threads, iters, pages;
	unsigned long long ops;
	unsigned long errors;
};

/* One process: T threads churning, counts sent to the parent. */
static int child_main(unsigned long proc, int out, void *arg)
{
	const struct run *run = arg;
	unsigned long threads = run->threads;
	struct worker workers[MAX_THREADS];
	struct result res = { .proc = (uint32_t)proc };
	pthread_barrier_t start;
	pthread_attr_t attr;
	unsigned long t, started = 0;
	int err;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_barrier_init(&start, NULL, threads);
	for (t = 0; t < threads; t++) {
		workers[t] = (struct worker) {
			.start = &start, .proc = proc, .thread = t,
			.iters = run->iters, .pages = run->pages,
			.page_size = (size_t)sysconf(_SC_PAGESIZE),
		};
	}
	/* Threads 1..T-1 run in new threads, thread 0 in this one. */
	for (t = 1; t < threads; t++) {
		err = pthread_create(&workers[t].tid, &attr, churn, &workers[t]);
		if (err) {
			fprintf(stderr, "mmapchurn: pthread_create: %s\n",
				strerror(err));
			/* The barrier waits for all T: give up. */
			res.errors++;
			if (write(out, &res, sizeof(res)) != sizeof(res))
				_exit(CHILD_FAILED + 1);
			_exit(CHILD_FAILED);
		}
		started++;
	}
	churn(&workers[0]);
	for (t = 1; t <= started; t++)
		pthread_join(workers[t].tid, NULL);
	for (t = 0; t < threads; t++) {
		res.ops += workers[t].ops;
		res.errors += workers[t].errors;
	}
	if (write(out, &res, sizeof(res)) != sizeof(res))
		return CHILD_FAILED;
	return res.errors ? CHILD_FAILED : 0;
}

static void add_result(const void *rec, void *arg)
{
	const struct result *res = rec;
	struct run *run = arg;

	run->ops += res->ops;
	run->errors += res->errors;
}

int main(int argc, char **argv)
{
	unsigned char seen[MAX_PROCS] = { 0 };
	pid_t pids[MAX_PROCS] = { 0 };
	struct crew crew = { "mmapchurn", 0, pids, seen, { -1, -1 } };
	unsigned long procs;
	struct run run = { 0 };
	struct result res;
	long long t0, t1;

	parse_params("mmapchurn", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	procs = params[PARAM_PROCS].value;
	run.threads = params[PARAM_THREADS].value;
	run.iters = params[PARAM_ITERS].value;
	run.pages = params[PARAM_PAGES].value;
	crew.n = procs;

	if (pipe(crew.fds)) {
		fprintf(stderr, "mmapchurn: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);	/* children must not inherit buffered output */

	t0 = now_ns();
	run.errors += crew_fork(&crew, child_main, &run);
	run.errors += crew_collect(&crew, &res, sizeof(res), add_result, &run,
				   CHILD_FAILED, 0, 0);
	t1 = now_ns();

	printf("{\"workload\":\"mmapchurn\",\"unit\":\"munmap\",");
	printf("\"ops\":%llu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       run.ops, run.errors, t1 - t0);
	printf("\"params\":{\"procs\":%lu,\"threads\":%lu,\"iters\":%lu,\"pages\":%lu}}\n",
	       procs, run.threads, run.iters, run.pages);
	return run.errors ? 1 : 0;
}

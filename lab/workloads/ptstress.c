// SPDX-License-Identifier: GPL-2.0-only
/*
 * ptstress - processes churn their page tables for a fixed time while others
 * walk them through /proc/PID/pagemap.
 *
 * Stresses: every path that allocates, moves, copies or frees page-table
 * pages, concurrently with foreign walkers of the same page tables. --workers
 * processes loop until the deadline, round robin over five kinds of round:
 *   fault    mmap --mib MiB (THP off), write and verify every page (PTE page
 *            allocation, do_anonymous_page), mprotect it read-only (PTEs
 *            changed in place, TLB flush), verify again, munmap (PTE pages
 *            freed).
 *   mremap   fill a region at a 2 MiB-aligned address and move it with
 *            MREMAP_MAYMOVE|MREMAP_FIXED to another 2 MiB-aligned address:
 *            whole PTE pages change hands (move_normal_pmd). The old range is
 *            mapped again and must read zero (new PTE pages in the old PMD
 *            slots), then written, and the moved copy checked again. Then a
 *            move to an address one page off alignment (move_ptes: the old
 *            and the new PTE page mapped at once) and a shrink and a grow in
 *            place.
 *   fork     fill a region and fork: the child checks the inherited pattern,
 *            writes its own to every page (COW faults) and checks it; the
 *            parent checks its pattern is untouched once the child is gone
 *            (copy_pte_range, COW, exit teardown).
 *   exec     fork and execve this program with --exec-child, which maps,
 *            writes and checks a small region (a new mm, its teardown).
 *   threads  2-4 threads of the worker's mm each mmap, fill, mremap (grow,
 *            may move), check, mprotect and munmap their own regions, a short
 *            burst at the same time: PTE pages allocated, moved and freed
 *            while the other vCPU runs in the same mm.
 * Meanwhile --readers processes list the workers and their children (the
 * workers' pids, plus every /proc/PID whose parent is a worker) and pread the
 * pagemap entries of every mapping in /proc/PID/maps, in chunks: a foreign
 * page-table walk (pagemap_pmd_range maps the other mm's PTE pages) racing
 * with the allocation, moves and frees above. Processes and mappings that go
 * away in between are normal, not errors.
 *
 * Usage: ptstress [--seconds S] [--workers W] [--readers R] [--mib M] [--thp 0|1]
 *        ptstress --exec-child WORKER ITERATION
 *   --seconds S   wall time to run (1..86400, default 10)
 *   --workers W   worker processes churning (1..64, default 4)
 *   --readers R   pagemap reader processes (0..16, default 2)
 *   --thp 1       fault rounds also collapse their region into huge pages
 *                 (MADV_HUGEPAGE + MADV_COLLAPSE, khugepaged's path) and
 *                 split one by a partial mprotect, checking the data after
 *                 each; needs CONFIG_TRANSPARENT_HUGEPAGE (default 0)
 *   --mib M       MiB per region (2..256, default 8); a worker holds up to
 *                 about 2 * M MiB at once, its fork child M more
 *   --exec-child  the exec target of the exec rounds (not for direct use)
 * Workers stop within about a second of the deadline (a round cut short by
 * it is not counted); the report follows once every process has exited.
 *
 * Self-check: every page written holds a pattern derived from (worker,
 * iteration, thread, step, page) in its first word and zero in its last;
 * each is checked after every move, protection change, fork and remap, and
 * ranges that must be fresh must read zero. Every mismatched page is an error
 * (reported on stderr with worker, kind, iteration and page), as are failed
 * mmap/mremap/mprotect/munmap calls, failed forks (EAGAIN and ENOMEM are
 * retried for a second), failed thread creation, an exec child that fails,
 * a fork or exec child killed by a signal, and a worker or reader that dies
 * or sends no counts. Readers also check /proc/self/pagemap of a small
 * region of their own: the pages they wrote must be present, the others not.
 *
 * Output: one JSON line on stdout, e.g. (--seconds 5, on the host)
 *   {"workload":"ptstress","unit":"round","ops":197,"errors":0,
 *    "elapsed_ns":5008531558,"params":{"seconds":5,"workers":4,
 *    "readers":2,"mib":8,"thp":0},"rounds":{"fault":39,"mremap":39,"fork":40,
 *    "exec":41,"threads":38},"pages_verified":3545164,
 *    "pagemap_entries":8292884,"pagemap_present":5623418,
 *    "pagemap_procs":2492,"pagemap_children":193,"collapses":0,
 *    "nohugepage":true}
 * (on one line); ops is the sum of the rounds of all kinds. pagemap_procs
 * counts pagemaps the readers opened, pagemap_children those of workers'
 * children among them. "nohugepage" is false when the kernel has no THP
 * (MADV_NOHUGEPAGE gives EINVAL: nothing to turn off). Exit 0 if errors == 0,
 * 1 otherwise, 2 on bad arguments.
 * Built static for i386: gcc -m32 -static -O2 -Wall -Wextra ptstress.c
 * (glibc 2.34 and later has pthreads in libc: no -pthread needed).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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

#define CHILD_FAILED		3	/* errors: see record, shared page */
#define CHILD_LATE		4	/* fork child cut short by deadline */
#define EXEC_CHILD_MAX_BAD	100	/* exec child exits with bad pages */
#define EXEC_CHILD_NO_MMAP	101	/* exec child: mmap failed */

#define MAX_WORKERS		64
#define MAX_READERS		16
#define MAX_THREADS		4
#define MAX_TARGETS		256	/* processes a reader walks a pass */

#define MIB			(1024UL * 1024UL)
#define PMD_SIZE		(2UL * MIB)
#define EXEC_PAGES		256	/* the exec child's region */
#define SELF_PAGES		64	/* a reader's own region */
#define BURST			8	/* iterations per thread and round */
#define THREAD_STACK		(256 * 1024)
#define LATE_EVERY		512	/* pages between looks at the clock */
#define CHUNK			1024	/* pagemap entries per pread */
#define GRACE_NS		(60LL * 1000000000LL)
#define MAX_PRINTED		20	/* error lines per process */

#define PM_PRESENT		(1ULL << 63)
#define PF_EXITING		0x00000004	/* /proc/PID/stat flags */
#define ZERO			(~0u)	/* check(): pages must read zero */

enum { FAULT, MREMAP, FORK, EXEC, THREADS, NKINDS };

static const char *const kind_name[NKINDS] = {
	"fault", "mremap", "fork", "exec", "threads",
};

static struct param params[] = {
	{ "seconds", 10, 1, 86400 },
	{ "workers",  4, 1, MAX_WORKERS },
	{ "readers",  2, 0, MAX_READERS },
	{ "mib",      8, 2, 256 },
	{ "thp",      0, 0, 1 },
};

/* What each worker and reader sends the parent: one write, atomic on a pipe. */
struct result {
	uint32_t proc;		/* workers 0..W-1, readers W..W+R-1 */
	uint32_t nohuge;	/* MADV_NOHUGEPAGE accepted */
	uint64_t rounds[NKINDS];
	uint64_t errors;
	uint64_t verified;	/* pages checked */
	uint64_t pm_entries;	/* pagemap entries read */
	uint64_t pm_present;	/* of which present (bit 63) */
	uint64_t pm_procs;	/* pagemaps opened */
	uint64_t pm_children;	/* of which workers' children */
	uint64_t collapses;	/* --thp 1: MADV_COLLAPSE calls that worked */
};

/* Where a check happens, for the patterns and the error messages. */
struct ctx {
	unsigned long worker;
	const char *kind;
	unsigned long iter;
	int thread;		/* -1 outside the threads rounds */
	uint64_t verified;
	uint64_t errors;
};

/* What a fork child leaves its worker: a MAP_SHARED page. */
struct child_counts {
	uint64_t verified;
	uint64_t errors;
};

static long long deadline;	/* CLOCK_MONOTONIC ns, inherited by all */
static size_t page_size, wpp;	/* bytes and 32-bit words per page */
static size_t region_len;	/* --mib in bytes */
static unsigned long region_pages;
static char self_path[PATH_MAX];
static int result_fd = -1;	/* a worker's end of the pipe */
static int nohuge_taken;
static int use_thp;		/* --thp 1: huge pages wanted, collapsed, split */
static uint64_t collapses;	/* this worker's successful MADV_COLLAPSE calls */
static unsigned int printed;
static struct child_counts *child_counts;
static int go;			/* threads round: start together */

static void print_usage(FILE *f)
{
	fprintf(f, "usage: ptstress [--seconds S] [--workers W] [--readers R] [--mib M] [--thp 0|1]\n"
		   "       ptstress --exec-child WORKER ITERATION\n");
}

static inline int late(void)
{
	return now_ns() >= deadline;
}

/* Only the first MAX_PRINTED error lines of a process are printed. */
static int may_print(void)
{
	unsigned int n = __atomic_fetch_add(&printed, 1, __ATOMIC_RELAXED);

	if (n == MAX_PRINTED)
		fprintf(stderr, "ptstress: (process %d: further errors not printed)\n",
			(int)getpid());
	return n < MAX_PRINTED;
}

static const char *thread_name(const struct ctx *c, char *buf, size_t size)
{
	if (c->thread < 0)
		return "";
	snprintf(buf, size, " thread %d", c->thread);
	return buf;
}

/* A failed system call (errno set): an error. */
static void failed(struct ctx *c, const char *call)
{
	int err = errno;
	char t[24];

	c->errors++;
	if (may_print())
		fprintf(stderr, "ptstress: worker %lu %s%s iteration %lu: %s: %s\n",
			c->worker, c->kind, thread_name(c, t, sizeof(t)),
			c->iter, call, strerror(err));
	usleep(10000);	/* no hot loop when memory is short */
}

static void mismatch(struct ctx *c, unsigned long page, const char *where,
		     uint32_t got, uint32_t want)
{
	char t[24];

	c->errors++;
	if (may_print())
		fprintf(stderr, "ptstress: worker %lu %s%s iteration %lu page %lu: %s: read 0x%08x, expected 0x%08x\n",
			c->worker, c->kind, thread_name(c, t, sizeof(t)),
			c->iter, page, where, (unsigned int)got,
			(unsigned int)want);
}

/* Never zero, different for every (worker, iteration, thread, salt, page). */
static inline uint32_t pattern(const struct ctx *c, unsigned long page,
			       unsigned int salt)
{
	return ((uint32_t)(c->worker + 1) * 0x9e3779b1u ^
		(uint32_t)(c->iter + 1) * 0x85ebca6bu ^
		(uint32_t)(c->thread + 2) * 0xc2b2ae35u ^
		(uint32_t)(salt + 1) * 0x27d4eb2fu ^ (uint32_t)page << 1) | 1u;
}

/* Write word 0 of pages from..to-1 of @p. -1 if the deadline came first. */
static int fill(const struct ctx *c, uint32_t *p, unsigned long from,
		unsigned long to, unsigned int salt)
{
	unsigned long i;

	for (i = from; i < to; i++) {
		if (i % LATE_EVERY == 0 && late())
			return -1;
		p[i * wpp] = pattern(c, i, salt);
	}
	return 0;
}

/*
 * Check pages from..to-1 of @p: word 0 holds the pattern for @salt (or zero
 * for ZERO) and the last word is zero. -1 if the deadline came first.
 */
static int check(struct ctx *c, const uint32_t *p, unsigned long from,
		 unsigned long to, unsigned int salt, const char *where)
{
	uint32_t want, got;
	unsigned long i;

	barrier();
	for (i = from; i < to; i++) {
		if (i % LATE_EVERY == 0 && late())
			return -1;
		want = salt == ZERO ? 0 : pattern(c, i, salt);
		got = p[i * wpp];
		if (got != want)
			mismatch(c, i, where, got, want);
		else if ((got = p[i * wpp + wpp - 1]) != 0)
			mismatch(c, i, where, got, 0);	/* last word */
		c->verified++;
	}
	return 0;
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25	/* Linux 6.1 */
#endif

static void nohuge(void *p, size_t len)
{
	if (!madvise(p, len, MADV_NOHUGEPAGE))
		__atomic_store_n(&nohuge_taken, 1, __ATOMIC_RELAXED);
	else if (errno != EINVAL && may_print())	/* EINVAL: no THP */
		fprintf(stderr, "ptstress: madvise: %s\n", strerror(errno));
}

static void *map_anon(void *addr, size_t len, int fixed)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED : 0),
		       -1, 0);

	if (p != MAP_FAILED)
		nohuge(p, len);
	return p;
}

static void unmap(struct ctx *c, void *p, size_t len)
{
	if (munmap(p, len))
		failed(c, "munmap");
}

/* fork(), retrying EAGAIN and ENOMEM for a second; -2: the deadline came. */
static pid_t fork_retry(struct ctx *c)
{
	pid_t pid;
	int tries;

	for (tries = 0; ; tries++) {
		pid = fork();
		if (pid >= 0)
			return pid;
		if (errno != EAGAIN && errno != ENOMEM)
			break;
		if (late())
			return -2;
		if (tries >= 50)
			break;
		usleep(20000);
	}
	failed(c, "fork");
	return -1;
}

static int wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

static void child_died(struct ctx *c, const char *who, int status)
{
	char t[24];

	c->errors++;
	if (!may_print())
		return;
	if (status == -1)
		fprintf(stderr, "ptstress: worker %lu %s%s iteration %lu: %s: waitpid: %s\n",
			c->worker, c->kind, thread_name(c, t, sizeof(t)),
			c->iter, who, strerror(errno));
	else if (WIFSIGNALED(status))
		fprintf(stderr, "ptstress: worker %lu %s iteration %lu: %s killed by signal %d\n",
			c->worker, c->kind, c->iter, who, WTERMSIG(status));
	else
		fprintf(stderr, "ptstress: worker %lu %s iteration %lu: %s exited %d%s\n",
			c->worker, c->kind, c->iter, who, WEXITSTATUS(status),
			WEXITSTATUS(status) == CHILD_EXEC_FAILED ?
			" (exec failed)" : "");
}

/*
 * Three pages inside the region's first whole 2 MiB block, one page in: a
 * protection change there splits the huge page that maps the block (the
 * region is at least 2 MiB but mmap() need not align it, so the block may
 * start up to 2 MiB - 4 kB in, and only --mib >= 4 guarantees a whole one;
 * with less the mprotect just changes 4 kB PTEs).
 */
static void *split_target(void *region)
{
	uintptr_t a = ((uintptr_t)region + PMD_SIZE - 1) & ~(PMD_SIZE - 1);

	if (a + PMD_SIZE > (uintptr_t)region + region_len)
		a = (uintptr_t)region;
	return (void *)(a + page_size);
}

/* Each round returns 1 if it ran to its end (mismatches or not), else 0. */

static int round_fault(struct ctx *c)
{
	unsigned long n = region_pages;
	int done = 0;
	uint32_t *p;

	p = map_anon(NULL, region_len, 0);
	if (p == MAP_FAILED) {
		failed(c, "mmap");
		return 0;
	}
	if (fill(c, p, 0, n, 0) || check(c, p, 0, n, 0, "after writing"))
		goto out;
	if (use_thp) {
		/*
		 * The range was written as 4 kB pages (NOHUGEPAGE). Allow
		 * huge pages and collapse it (the old PTE pages are detached
		 * and freed: pmdp_collapse_flush; khugepaged may do the same
		 * meanwhile), then split one again by changing the protection
		 * of 3 pages in it (split_huge_pmd re-installs a deposited
		 * PTE page). Not every collapse can succeed (EAGAIN, ENOMEM,
		 * unaligned ends): the data is checked, not the outcome.
		 */
		if (madvise(p, region_len, MADV_HUGEPAGE) && errno != EINVAL)
			failed(c, "madvise(MADV_HUGEPAGE)");
		if (!madvise(p, region_len, MADV_COLLAPSE))
			collapses++;
		if (check(c, p, 0, n, 0, "after MADV_COLLAPSE"))
			goto out;
		if (mprotect(split_target(p), 3 * page_size, PROT_READ)) {
			failed(c, "mprotect (split)");
			goto out;
		}
		if (check(c, p, 0, n, 0, "after a split by mprotect"))
			goto out;
	}
	if (mprotect(p, region_len, PROT_READ)) {
		failed(c, "mprotect");
		goto out;
	}
	if (check(c, p, 0, n, 0, "after mprotect read-only"))
		goto out;
	done = 1;
out:
	unmap(c, p, region_len);
	return done;
}

/* mremap() to exactly @to (resize in place if @to is NULL), else an error. */
static int move(struct ctx *c, void *from, size_t old_len, size_t new_len,
		void *to, const char *what)
{
	void *q;

	if (to)
		q = mremap(from, old_len, new_len,
			   MREMAP_MAYMOVE | MREMAP_FIXED, to);
	else
		q = mremap(from, old_len, new_len, 0);
	if (q == MAP_FAILED) {
		failed(c, what);
		return -1;
	}
	if (q != (to ? to : from)) {
		char t[24];

		c->errors++;
		if (may_print())
			fprintf(stderr, "ptstress: worker %lu %s%s iteration %lu: %s returned %p, not %p\n",
				c->worker, c->kind,
				thread_name(c, t, sizeof(t)), c->iter, what,
				q, to ? to : from);
		munmap(q, new_len);
		return -1;
	}
	return 0;
}

/*
 * Layout, in one PROT_NONE reservation trimmed to start 2 MiB-aligned:
 *   a = base                    the region, filled here first
 *   b = base + len_r + 2 MiB    where it moves whole PMDs at a time
 * len_r is the region rounded up to 2 MiB, so the two never overlap.
 */
static int round_mremap(struct ctx *c)
{
	unsigned long n = region_pages, half = region_pages / 2;
	size_t len = region_len;
	size_t len_r = (len + PMD_SIZE - 1) & ~(PMD_SIZE - 1);
	size_t span = 2 * len_r + 2 * PMD_SIZE;
	char *raw, *base, *a, *b, *u;
	int done = 0;
	void *p;

	raw = mmap(NULL, span + PMD_SIZE, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED) {
		failed(c, "mmap reservation");
		return 0;
	}
	base = (char *)(((uintptr_t)raw + PMD_SIZE - 1) & ~(PMD_SIZE - 1));
	if (base > raw)
		unmap(c, raw, base - raw);
	if (raw + span + PMD_SIZE > base + span)
		unmap(c, base + span, raw + span + PMD_SIZE - (base + span));
	a = base;
	b = base + len_r + PMD_SIZE;

	p = map_anon(a, len, 1);
	if (p == MAP_FAILED) {
		failed(c, "mmap at the aligned address");
		goto out;
	}
	if (fill(c, (uint32_t *)a, 0, n, 0))
		goto out;
	/* Whole PTE pages move from a's PMD slots to b's: move_normal_pmd. */
	if (move(c, a, len, len, b, "mremap to the other aligned address"))
		goto out;
	if (check(c, (uint32_t *)b, 0, n, 0, "after the aligned move"))
		goto out;
	/* The old range again: fresh PTE pages, zero (zero page) reads. */
	p = map_anon(a, len, 1);
	if (p == MAP_FAILED) {
		failed(c, "mmap over the old range");
		goto out;
	}
	if (check(c, (uint32_t *)a, 0, n, ZERO, "old range mapped again") ||
	    fill(c, (uint32_t *)a, 0, n, 1) ||
	    check(c, (uint32_t *)b, 0, n, 0,
		  "moved copy after writing the old range") ||
	    check(c, (uint32_t *)a, 0, n, 1, "old range after writing it"))
		goto out;
	unmap(c, a, len);
	/* One page off alignment: move_ptes, both PTE pages mapped at once. */
	u = a + page_size;
	if (move(c, b, len, len, u, "mremap to an unaligned address"))
		goto out;
	if (check(c, (uint32_t *)u, 0, n, 0, "after the unaligned move"))
		goto out;
	/* Shrink (the tail's PTEs zapped), then grow back in place. */
	if (move(c, u, len, half * page_size, NULL, "mremap shrink"))
		goto out;
	if (check(c, (uint32_t *)u, 0, half, 0, "after shrinking"))
		goto out;
	if (move(c, u, half * page_size, len, NULL, "mremap grow in place"))
		goto out;
	if (check(c, (uint32_t *)u, 0, half, 0, "after growing") ||
	    check(c, (uint32_t *)u, half, n, ZERO, "grown part"))
		goto out;
	done = 1;
out:
	unmap(c, base, span);
	return done;
}

static int round_fork(struct ctx *c)
{
	unsigned long n = region_pages;
	int done = 0, status;
	uint32_t *p;
	pid_t pid;

	p = map_anon(NULL, region_len, 0);
	if (p == MAP_FAILED) {
		failed(c, "mmap");
		return 0;
	}
	if (fill(c, p, 0, n, 0))
		goto out;
	child_counts->verified = 0;
	child_counts->errors = 0;
	pid = fork_retry(c);
	if (pid < 0)
		goto out;
	if (pid == 0) {
		struct ctx cc = *c;
		int cut;

		close(result_fd);
		cc.verified = 0;
		cc.errors = 0;
		cut = check(&cc, p, 0, n, 0, "child: inherited pattern") ||
		      fill(&cc, p, 0, n, 2) ||
		      check(&cc, p, 0, n, 2, "child: after its COW writes");
		child_counts->verified = cc.verified;
		child_counts->errors = cc.errors;
		_exit(cut ? CHILD_LATE : cc.errors ? CHILD_FAILED : 0);
	}
	status = wait_child(pid);
	if (status != -1 && WIFEXITED(status) &&
	    (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == CHILD_FAILED ||
	     WEXITSTATUS(status) == CHILD_LATE)) {
		c->verified += child_counts->verified;
		c->errors += child_counts->errors;
		if (WEXITSTATUS(status) == CHILD_LATE)
			goto out;
	} else {
		child_died(c, "child", status);
	}
	if (check(c, p, 0, n, 0, "parent after the child's COW writes"))
		goto out;
	done = 1;
out:
	unmap(c, p, region_len);
	return done;
}

static int round_exec(struct ctx *c)
{
	char worker[24], iter[24];
	char *args[] = { "ptstress", "--exec-child", worker, iter, NULL };
	int status, code;
	pid_t pid;

	snprintf(worker, sizeof(worker), "%lu", c->worker);
	snprintf(iter, sizeof(iter), "%lu", c->iter);
	pid = fork_retry(c);
	if (pid < 0)
		return 0;
	if (pid == 0) {
		execve(self_path, args, environ);
		fprintf(stderr, "ptstress: worker %lu exec iteration %lu: execve %s: %s\n",
			c->worker, c->iter, self_path, strerror(errno));
		_exit(CHILD_EXEC_FAILED);
	}
	status = wait_child(pid);
	if (status == -1 || !WIFEXITED(status)) {
		child_died(c, "exec child", status);
		return 1;
	}
	code = WEXITSTATUS(status);
	if (code == 0)
		c->verified += 2 * EXEC_PAGES;
	else if (code <= EXEC_CHILD_MAX_BAD)
		c->errors += code;	/* mismatched pages, printed by it */
	else
		child_died(c, "exec child", status);
	return 1;
}

/* The exec target: a fresh mm maps, writes and checks a small region. */
static int exec_child(int argc, char **argv)
{
	struct ctx c = { .kind = "exec child", .thread = -1 };
	uint32_t *p;
	char *end;

	if (argc != 4)
		usage_error("ptstress", print_usage, "--exec-child needs WORKER ITERATION",
			    argc > 2 ? argv[2] : "");
	c.worker = strtoul(argv[2], &end, 10);
	if (*end || end == argv[2])
		usage_error("ptstress", print_usage, "not an integer", argv[2]);
	c.iter = strtoul(argv[3], &end, 10);
	if (*end || end == argv[3])
		usage_error("ptstress", print_usage, "not an integer", argv[3]);
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	wpp = page_size / sizeof(uint32_t);
	deadline = LLONG_MAX;

	p = map_anon(NULL, EXEC_PAGES * page_size, 0);
	if (p == MAP_FAILED) {
		failed(&c, "mmap");
		return EXEC_CHILD_NO_MMAP;
	}
	fill(&c, p, 0, EXEC_PAGES, 3);
	check(&c, p, 0, EXEC_PAGES, 3, "after writing");
	if (mprotect(p, EXEC_PAGES * page_size, PROT_READ))
		failed(&c, "mprotect");
	check(&c, p, 0, EXEC_PAGES, 3, "after mprotect read-only");
	if (c.errors > EXEC_CHILD_MAX_BAD)
		return EXEC_CHILD_MAX_BAD;
	return (int)c.errors;
}

struct thr {
	pthread_t tid;
	struct ctx c;
	size_t len;
};

/* One thread's burst: its own regions, next to its siblings' in one mm. */
static void *thread_burst(void *arg)
{
	struct thr *t = arg;
	struct ctx *c = &t->c;
	unsigned long n = t->len / page_size, j;
	uint32_t *p, *q;

	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		sched_yield();
	for (j = 0; j < BURST && !late(); j++) {
		unsigned int salt = 16 + 2 * j;

		p = map_anon(NULL, t->len, 0);
		if (p == MAP_FAILED) {
			failed(c, "mmap");
			break;
		}
		if (fill(c, p, 0, n, salt)) {
			unmap(c, p, t->len);
			break;
		}
		/* Grow: the PTEs move when it cannot grow in place. */
		q = mremap(p, t->len, 2 * t->len, MREMAP_MAYMOVE);
		if (q == MAP_FAILED) {
			failed(c, "mremap grow");
			unmap(c, p, t->len);
			break;
		}
		if (check(c, q, 0, n, salt, "after mremap grow") ||
		    check(c, q, n, 2 * n, ZERO, "grown part") ||
		    fill(c, q, n, 2 * n, salt + 1))
			goto cut;
		if (mprotect(q, t->len, PROT_READ))
			failed(c, "mprotect");
		if (check(c, q, 0, n, salt, "after mprotect read-only"))
			goto cut;
		/* Free the first half's page tables as the siblings fault. */
		unmap(c, q, t->len);
		if (check(c, q, n, 2 * n, salt + 1,
			  "second half after unmapping the first")) {
			unmap(c, (char *)q + t->len, t->len);
			break;
		}
		unmap(c, (char *)q + t->len, t->len);
		continue;
cut:
		unmap(c, q, 2 * t->len);
		break;
	}
	return NULL;
}

static int round_threads(struct ctx *c)
{
	unsigned long nthreads = 2 + (c->iter / NKINDS) % (MAX_THREADS - 1);
	struct thr thr[MAX_THREADS];
	unsigned long t, started;
	pthread_attr_t attr;
	size_t len;
	int err;

	len = region_len / nthreads;
	if (len < MIB)
		len = MIB;
	len &= ~(page_size - 1);
	for (t = 0; t < nthreads; t++) {
		thr[t].c = *c;
		thr[t].c.thread = (int)t;
		thr[t].c.verified = 0;
		thr[t].c.errors = 0;
		thr[t].len = len;
	}
	__atomic_store_n(&go, 0, __ATOMIC_RELEASE);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	/* Thread 0 is this one. */
	for (started = 1; started < nthreads; started++) {
		err = pthread_create(&thr[started].tid, &attr, thread_burst,
				     &thr[started]);
		if (err) {
			errno = err;
			failed(c, "pthread_create");
			break;
		}
	}
	pthread_attr_destroy(&attr);
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	thread_burst(&thr[0]);
	for (t = 1; t < started; t++)
		pthread_join(thr[t].tid, NULL);
	for (t = 0; t < nthreads; t++) {
		c->verified += thr[t].c.verified;
		c->errors += thr[t].c.errors;
	}
	return !late();
}

static int (*const rounds[NKINDS])(struct ctx *c) = {
	[FAULT] = round_fault,
	[MREMAP] = round_mremap,
	[FORK] = round_fork,
	[EXEC] = round_exec,
	[THREADS] = round_threads,
};

static int worker_main(unsigned long w, int out)
{
	struct result res = { .proc = (uint32_t)w };
	unsigned long it;
	int kind;

	result_fd = out;
	child_counts = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (child_counts == MAP_FAILED) {
		fprintf(stderr, "ptstress: worker %lu: mmap: %s\n", w,
			strerror(errno));
		res.errors++;
	} else {
		/* Round robin, each worker starting at another kind. */
		for (it = 0; !late(); it++) {
			struct ctx c = {
				.worker = w, .iter = it, .thread = -1,
			};

			kind = (int)((it + w) % NKINDS);
			c.kind = kind_name[kind];
			if (rounds[kind](&c))
				res.rounds[kind]++;
			res.verified += c.verified;
			res.errors += c.errors;
		}
	}
	res.nohuge = nohuge_taken;
	res.collapses = collapses;
	if (write(out, &res, sizeof(res)) != sizeof(res))
		return CHILD_FAILED;
	return res.errors ? CHILD_FAILED : 0;
}

/* --- readers ------------------------------------------------------------ */

struct reader {
	unsigned long index;
	const pid_t *workers;
	unsigned long nworkers;
	struct result res;
	uint64_t ents[CHUNK];
	char maps[65536];
};

static void reader_error(struct reader *r, const char *what, const char *path)
{
	r->res.errors++;
	if (may_print())
		fprintf(stderr, "ptstress: reader %lu: %s %s: %s\n", r->index,
			what, path, strerror(errno));
}

/*
 * State, parent and flags of a process from /proc/PID/stat; -1 if it is
 * gone.
 */
static int proc_stat(long pid, char *state, int *ppid, unsigned int *flags)
{
	char path[64], buf[512], *rp;
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return -1;
	buf[len] = '\0';
	rp = strrchr(buf, ')');	/* the comm may hold anything */
	if (!rp || sscanf(rp + 1, " %c %d %*d %*d %*d %*d %u", state, ppid,
			  flags) != 3)
		return -1;
	return 0;
}

/*
 * Errors that only mean the process or the mapping went away. A reader
 * without CAP_SYS_PTRACE (a user on the host) also gets EACCES for a process
 * that is exiting (its mm already gone) or a zombie.
 */
static int gone(pid_t pid, int err)
{
	unsigned int flags;
	char state;
	int ppid;

	if (err == ENOENT || err == ESRCH || err == EINVAL || err == EINTR)
		return 1;
	if (err != EACCES && err != EPERM)
		return 0;
	if (proc_stat(pid, &state, &ppid, &flags) || state == 'Z' ||
	    state == 'X' || (flags & PF_EXITING))
		return 1;
	errno = err;
	return 0;
}

static int is_worker(const struct reader *r, pid_t pid)
{
	unsigned long i;

	for (i = 0; i < r->nworkers; i++)
		if (r->workers[i] == pid && pid > 0)
			return 1;
	return 0;
}

/* The workers, then every process whose parent is a worker (best effort). */
static unsigned long targets(struct reader *r, pid_t *pids)
{
	unsigned long n = 0, i;
	struct dirent *d;
	unsigned int flags;
	char *end, state;
	DIR *dir;
	long pid;
	int ppid;

	for (i = 0; i < r->nworkers; i++)
		if (r->workers[i] > 0)
			pids[n++] = r->workers[i];
	dir = opendir("/proc");
	if (!dir)
		return n;
	while (n < MAX_TARGETS && (d = readdir(dir))) {
		pid = strtol(d->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;	/* not a process */
		if (!proc_stat(pid, &state, &ppid, &flags) &&
		    is_worker(r, ppid))
			pids[n++] = (pid_t)pid;
	}
	closedir(dir);
	return n;
}

static void count_entries(struct reader *r, size_t n)
{
	size_t i;

	r->res.pm_entries += n;
	for (i = 0; i < n; i++)
		r->res.pm_present += !!(r->ents[i] & PM_PRESENT);
}

/* Read the pagemap entries of every mapping of @pid. */
static void walk(struct reader *r, pid_t pid, int child)
{
	char path[64], *line, *end;
	unsigned long start, stop, addr, cnt;
	size_t used = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (!gone(pid, errno))
			reader_error(r, "open", path);
		return;
	}
	while (used < sizeof(r->maps) - 1 &&
	       (n = read(fd, r->maps + used, sizeof(r->maps) - 1 - used)) > 0)
		used += n;
	close(fd);
	r->maps[used] = '\0';

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (!gone(pid, errno))
			reader_error(r, "open", path);
		return;
	}
	r->res.pm_procs++;
	r->res.pm_children += child;
	for (line = r->maps; *line && !late(); line = end + 1) {
		start = strtoul(line, &end, 16);
		if (*end != '-')
			break;
		stop = strtoul(end + 1, &end, 16);
		for (addr = start; addr < stop; addr += cnt * page_size) {
			cnt = (stop - addr) / page_size;
			if (cnt > CHUNK)
				cnt = CHUNK;
			n = pread(fd, r->ents, cnt * sizeof(uint64_t),
				  (off_t)(addr / page_size * sizeof(uint64_t)));
			if (n < 0) {
				if (!gone(pid, errno))
					reader_error(r, "pread", path);
				goto out;
			}
			if (n == 0)	/* the mm is gone */
				goto out;
			count_entries(r, (size_t)n / sizeof(uint64_t));
			if ((size_t)n < cnt * sizeof(uint64_t))
				break;	/* short: next mapping */
		}
		end = strchr(end, '\n');
		if (!end)
			break;
	}
out:
	close(fd);
}

/* Our own pagemap: the even pages we wrote are present, the odd ones not. */
static void self_check(struct reader *r, const char *region, int nohuge_ok)
{
	unsigned long i;
	int present, want;
	ssize_t n;
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		reader_error(r, "open", "/proc/self/pagemap");
		return;
	}
	n = pread(fd, r->ents, SELF_PAGES * sizeof(uint64_t),
		  (off_t)((uintptr_t)region / page_size * sizeof(uint64_t)));
	close(fd);
	if (n != (ssize_t)(SELF_PAGES * sizeof(uint64_t))) {
		if (n >= 0)
			errno = EIO;
		reader_error(r, "pread", "/proc/self/pagemap");
		return;
	}
	count_entries(r, SELF_PAGES);
	for (i = 0; i < SELF_PAGES; i++) {
		present = !!(r->ents[i] & PM_PRESENT);
		want = i % 2 == 0;
		if (present == want || (!want && !nohuge_ok))
			continue;
		r->res.errors++;
		if (may_print())
			fprintf(stderr, "ptstress: reader %lu: own page %lu: pagemap says %spresent\n",
				r->index, i, present ? "" : "not ");
	}
}

static int reader_main(unsigned long index, unsigned long proc,
		       const pid_t *workers, unsigned long nworkers, int out)
{
	static struct reader rd;
	struct reader *r = &rd;
	pid_t pids[MAX_TARGETS];
	unsigned long n, i, scan;
	int nohuge_ok = 1;
	char *region;

	r->index = index;
	r->workers = workers;
	r->nworkers = nworkers;
	r->res.proc = (uint32_t)proc;
	region = mmap(NULL, SELF_PAGES * page_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		reader_error(r, "mmap", "own region");
	} else {
		if (madvise(region, SELF_PAGES * page_size, MADV_NOHUGEPAGE))
			nohuge_ok = errno == EINVAL;	/* EINVAL: no THP */
		for (i = 0; i < SELF_PAGES; i += 2)
			region[i * page_size] = 1;
	}
	for (scan = 0; !late(); scan++) {
		n = targets(r, pids);
		for (i = 0; i < n && !late(); i++)
			walk(r, pids[i], !is_worker(r, pids[i]));
		if (scan % 8 == 0 && region != MAP_FAILED)
			self_check(r, region, nohuge_ok);
		if (!n)
			usleep(1000);
	}
	if (write(out, &r->res, sizeof(r->res)) != sizeof(r->res))
		return CHILD_FAILED;
	return r->res.errors ? CHILD_FAILED : 0;
}

/* --- the parent --------------------------------------------------------- */

int main(int argc, char **argv)
{
	unsigned long seconds, workers, readers, mib, nprocs, i, k;
	unsigned long errors = 0;
	unsigned long long ops = 0, verified = 0, entries = 0, present = 0;
	unsigned long long pm_procs = 0, pm_children = 0, ncollapses = 0;
	unsigned long long by_kind[NKINDS] = { 0 };
	unsigned char seen[MAX_WORKERS + MAX_READERS] = { 0 };
	pid_t pids[MAX_WORKERS + MAX_READERS] = { 0 };
	struct pollfd pfd;
	struct result res;
	long long t0, t1, left;
	int fds[2], nohuge_any = 0, killed = 0;
	ssize_t n;

	if (argc >= 2 && !strcmp(argv[1], "--exec-child"))
		return exec_child(argc, argv);
	parse_params("ptstress", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	seconds = params[0].value;
	workers = params[1].value;
	readers = params[2].value;
	mib = params[3].value;
	use_thp = (int)params[4].value;
	nprocs = workers + readers;
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	wpp = page_size / sizeof(uint32_t);
	region_len = mib * MIB;
	region_pages = region_len / page_size;
	if (find_self(argv[0], self_path, sizeof(self_path))) {
		fprintf(stderr, "ptstress: cannot find my own path (no /proc/self/exe, argv[0] '%s')\n",
			argv[0]);
		return 1;
	}
	if (pipe2(fds, O_CLOEXEC)) {	/* exec children must not hold it */
		fprintf(stderr, "ptstress: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);	/* children must not inherit buffered output */

	t0 = now_ns();
	deadline = t0 + (long long)seconds * 1000000000LL;
	/* Workers first: the readers inherit their pids. */
	for (i = 0; i < nprocs; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(fds[0]);
			if (i < workers)
				_exit(worker_main(i, fds[1]));
			_exit(reader_main(i - workers, i, pids, workers,
					  fds[1]));
		}
		if (pids[i] < 0) {
			fprintf(stderr, "ptstress: fork: %s\n", strerror(errno));
			errors++;
		}
	}
	close(fds[1]);	/* EOF once the last child has exited */

	pfd.fd = fds[0];
	pfd.events = POLLIN;
	for (;;) {
		left = deadline + GRACE_NS - now_ns();
		if (left <= 0 && !killed) {
			for (i = 0; i < nprocs; i++) {
				if (pids[i] > 0 && !seen[i]) {
					fprintf(stderr, "ptstress: process %lu still running %lld s after the deadline: killed\n",
						i, GRACE_NS / 1000000000LL);
					kill(pids[i], SIGKILL);
				}
			}
			killed = 1;
		}
		if (killed)
			left = 10000000000LL;	/* 10 s for the records */
		n = poll(&pfd, 1, (int)(left / 1000000 + 1));
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && killed)
			break;
		if (n <= 0)
			continue;
		n = read(fds[0], &res, sizeof(res));
		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(res) || res.proc >= nprocs || seen[res.proc]) {
			fprintf(stderr, "ptstress: bad record from a child\n");
			errors++;
			break;
		}
		seen[res.proc] = 1;
		for (k = 0; k < NKINDS; k++) {
			by_kind[k] += res.rounds[k];
			ops += res.rounds[k];
		}
		errors += res.errors;
		verified += res.verified;
		entries += res.pm_entries;
		present += res.pm_present;
		pm_procs += res.pm_procs;
		pm_children += res.pm_children;
		ncollapses += res.collapses;
		nohuge_any |= res.nohuge;
	}
	errors += reap_all("ptstress", pids, nprocs, seen, CHILD_FAILED);
	t1 = now_ns();

	printf("{\"workload\":\"ptstress\",\"unit\":\"round\",");
	printf("\"ops\":%llu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       ops, errors, t1 - t0);
	printf("\"params\":{\"seconds\":%lu,\"workers\":%lu,\"readers\":%lu,\"mib\":%lu,\"thp\":%d},",
	       seconds, workers, readers, mib, use_thp);
	printf("\"rounds\":{");
	for (k = 0; k < NKINDS; k++)
		printf("%s\"%s\":%llu", k ? "," : "", kind_name[k], by_kind[k]);
	printf("},\"pages_verified\":%llu,\"pagemap_entries\":%llu,",
	       verified, entries);
	printf("\"pagemap_present\":%llu,\"pagemap_procs\":%llu,",
	       present, pm_procs);
	printf("\"pagemap_children\":%llu,\"collapses\":%llu,\"nohugepage\":%s}\n",
	       pm_children, ncollapses, nohuge_any ? "true" : "false");
	return errors ? 1 : 0;
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * ptstress-rounds.c - the fault, mremap, fork and exec rounds, and the exec
 * child (ptstress --exec-child).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ptstress.h"

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

int round_fault(struct ctx *c)
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
int move_range(struct ctx *c, void *from, size_t old_len, size_t new_len,
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
 * @span bytes of PROT_NONE address space starting 2 MiB-aligned (reserved with
 * 2 MiB to spare, the spare trimmed), so that mremap(MREMAP_FIXED) inside it
 * can move whole page tables; NULL (an error counted) if mmap failed.
 */
char *reserve_aligned(struct ctx *c, size_t span)
{
	char *raw, *base;

	raw = mmap(NULL, span + PMD_SIZE, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED) {
		failed(c, "mmap reservation");
		return NULL;
	}
	base = (char *)(((uintptr_t)raw + PMD_SIZE - 1) & ~(PMD_SIZE - 1));
	if (base > raw)
		unmap(c, raw, base - raw);
	if (raw + span + PMD_SIZE > base + span)
		unmap(c, base + span, raw + span + PMD_SIZE - (base + span));
	return base;
}

/*
 * Layout, in one PROT_NONE reservation trimmed to start 2 MiB-aligned:
 *   a = base                    the region, filled here first
 *   b = base + len_r + 2 MiB    where it moves whole PMDs at a time
 * len_r is the region rounded up to 2 MiB, so the two never overlap.
 */
int round_mremap(struct ctx *c)
{
	unsigned long n = region_pages, half = region_pages / 2;
	size_t len = region_len;
	size_t len_r = pmd_round_up(len);
	size_t span = 2 * len_r + 2 * PMD_SIZE;
	char *base, *a, *b, *u;
	int done = 0;
	void *p;

	base = reserve_aligned(c, span);
	if (!base)
		return 0;
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
	if (move_range(c, a, len, len, b, "mremap to the other aligned address"))
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
	if (move_range(c, b, len, len, u, "mremap to an unaligned address"))
		goto out;
	if (check(c, (uint32_t *)u, 0, n, 0, "after the unaligned move"))
		goto out;
	/* Shrink (the tail's PTEs zapped), then grow back in place. */
	if (move_range(c, u, len, half * page_size, NULL, "mremap shrink"))
		goto out;
	if (check(c, (uint32_t *)u, 0, half, 0, "after shrinking"))
		goto out;
	if (move_range(c, u, half * page_size, len, NULL, "mremap grow in place"))
		goto out;
	if (check(c, (uint32_t *)u, 0, half, 0, "after growing") ||
	    check(c, (uint32_t *)u, half, n, ZERO, "grown part"))
		goto out;
	done = 1;
out:
	unmap(c, base, span);
	return done;
}

int round_fork(struct ctx *c)
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

int round_exec(struct ctx *c)
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
int exec_child(int argc, char **argv)
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

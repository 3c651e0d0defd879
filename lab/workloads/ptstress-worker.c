// SPDX-License-Identifier: GPL-2.0-only
/*
 * ptstress-worker.c - the threads round, and a worker's loop over the five
 * kinds of round.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "ptstress.h"

static int go;			/* threads round: start together */

struct thr {
	pthread_t tid;
	struct ctx c;
	size_t len;
};

/*
 * A region of @len bytes filled with @salt at a 2 MiB-aligned address, then
 * moved by mremap to another 2 MiB-aligned address: every whole 2 MiB of it
 * moves as a page table (move_normal_pmd), the rest PTE by PTE, while the
 * sibling threads fault and munmap in the same mm. The region at its new
 * place, checked, or NULL (errors counted, nothing of ours left mapped).
 *
 * Once the region has moved, its old range is a hole that a sibling's mmap
 * may take at once: only the reservation's PROT_NONE parts are unmapped after
 * the move, never the old range.
 */
static uint32_t *moved_aligned(struct ctx *c, size_t len, unsigned int salt)
{
	size_t len_r = pmd_round_up(len);
	unsigned long n = len / page_size;
	char *base = reserve_aligned(c, 2 * len_r), *to;

	if (!base)
		return NULL;
	to = base + len_r;
	if (map_anon(base, len, 1) == MAP_FAILED) {
		failed(c, "mmap at the aligned address");
		unmap(c, base, 2 * len_r);
		return NULL;
	}
	if (fill(c, (uint32_t *)base, 0, n, salt) ||
	    move_range(c, base, len, len, to, "mremap to the other aligned address")) {
		unmap(c, base, 2 * len_r);	/* not moved: all still ours */
		return NULL;
	}
	if (len_r > len) {	/* the reservation's rest around the old range and the new */
		unmap(c, base + len, len_r - len);
		unmap(c, to + len, len_r - len);
	}
	if (check(c, (uint32_t *)to, 0, n, salt, "after the aligned move")) {
		unmap(c, to, len);
		return NULL;
	}
	return (uint32_t *)to;
}

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

		p = moved_aligned(c, t->len, salt);
		if (!p)
			break;
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

int worker_main(unsigned long w, int out)
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
			if (!(kind_mask & (1UL << kind)))
				continue;
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

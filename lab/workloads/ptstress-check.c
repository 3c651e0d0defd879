// SPDX-License-Identifier: GPL-2.0-only
/*
 * ptstress-check.c - the patterns and their checks, error reporting, and
 * the system-call helpers every kind of round uses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ptstress.h"

static unsigned int printed;

/* Only the first MAX_PRINTED error lines of a process are printed. */
int may_print(void)
{
	unsigned int n = __atomic_fetch_add(&printed, 1, __ATOMIC_RELAXED);

	if (n == MAX_PRINTED)
		fprintf(stderr, "ptstress: (process %d: further errors not printed)\n",
			(int)getpid());
	return n < MAX_PRINTED;
}

const char *thread_name(const struct ctx *c, char *buf, size_t size)
{
	if (c->thread < 0)
		return "";
	snprintf(buf, size, " thread %d", c->thread);
	return buf;
}

/* A failed system call (errno set): an error. */
void failed(struct ctx *c, const char *call)
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
int fill(const struct ctx *c, uint32_t *p, unsigned long from,
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
int check(struct ctx *c, const uint32_t *p, unsigned long from,
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

static void nohuge(void *p, size_t len)
{
	if (!madvise(p, len, MADV_NOHUGEPAGE))
		__atomic_store_n(&nohuge_taken, 1, __ATOMIC_RELAXED);
	else if (errno != EINVAL && may_print())	/* EINVAL: no THP */
		fprintf(stderr, "ptstress: madvise: %s\n", strerror(errno));
}

void *map_anon(void *addr, size_t len, int fixed)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED : 0),
		       -1, 0);

	if (p != MAP_FAILED)
		nohuge(p, len);
	return p;
}

void unmap(struct ctx *c, void *p, size_t len)
{
	if (munmap(p, len))
		failed(c, "munmap");
}

/* fork(), retrying EAGAIN and ENOMEM for a second; -2: the deadline came. */
pid_t fork_retry(struct ctx *c)
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

int wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

void child_died(struct ctx *c, const char *who, int status)
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

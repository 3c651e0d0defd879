/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ptstress.h - what the files of ptstress share (see ptstress.c for what the
 * program does): its limits, the records, the check context, the state every
 * process inherits from the parent, and the functions one file offers the
 * others. ptstress is one program in several files (ptstress.toml lists
 * them) so that each stays readable: the parent (ptstress.c), the checks and
 * system-call helpers (ptstress-check.c), the fault/mremap/fork/exec rounds
 * (ptstress-rounds.c), the threads round and the worker loop
 * (ptstress-worker.c), and the pagemap readers (ptstress-readers.c).
 */
#ifndef LAB_PTSTRESS_H
#define LAB_PTSTRESS_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "workload.h"

#define CHILD_FAILED		3	/* errors: see record, shared page */
#define CHILD_LATE		4	/* fork child cut short by deadline */
#define EXEC_CHILD_MAX_BAD	100	/* exec child exits with bad pages */
#define EXEC_CHILD_NO_MMAP	101	/* exec child: mmap failed */

#define MAX_WORKERS		PARAM_WORKERS_MAX
#define MAX_READERS		PARAM_READERS_MAX
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

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25	/* Linux 6.1 */
#endif

enum { FAULT, MREMAP, FORK, EXEC, THREADS, NKINDS };

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

/* Set by the parent before it forks: every process inherits them. */
extern long long deadline;	/* CLOCK_MONOTONIC ns */
extern size_t page_size, wpp;	/* bytes and 32-bit words per page */
extern size_t region_len;	/* --mib in bytes */
extern unsigned long region_pages;
extern char self_path[PATH_MAX];
extern int use_thp;		/* --thp 1: huge pages wanted, collapsed, split */
extern unsigned long kind_mask;	/* --kinds: bit k set = rounds of kind k run */

/* A worker's own. */
extern int result_fd;		/* its end of the pipe */
extern int nohuge_taken;
extern uint64_t collapses;	/* its successful MADV_COLLAPSE calls */
extern struct child_counts *child_counts;

extern const char *const kind_name[NKINDS];

/* @len rounded up to whole 2 MiB blocks (PMDs): what an aligned move spans. */
static inline size_t pmd_round_up(size_t len)
{
	return (len + PMD_SIZE - 1) & ~(PMD_SIZE - 1);
}

static inline int late(void)
{
	return now_ns() >= deadline;
}

void print_usage(FILE *f);

/* ptstress-check.c */
int may_print(void);
const char *thread_name(const struct ctx *c, char *buf, size_t size);
void failed(struct ctx *c, const char *call);
int fill(const struct ctx *c, uint32_t *p, unsigned long from,
	 unsigned long to, unsigned int salt);
int check(struct ctx *c, const uint32_t *p, unsigned long from,
	  unsigned long to, unsigned int salt, const char *where);
void *map_anon(void *addr, size_t len, int fixed);
void unmap(struct ctx *c, void *p, size_t len);
pid_t fork_retry(struct ctx *c);
int wait_child(pid_t pid);
void child_died(struct ctx *c, const char *who, int status);

/* ptstress-rounds.c: each round returns 1 if it ran to its end, else 0 */
char *reserve_aligned(struct ctx *c, size_t span);
int move_range(struct ctx *c, void *from, size_t old_len, size_t new_len,
	       void *to, const char *what);
int round_fault(struct ctx *c);
int round_mremap(struct ctx *c);
int round_fork(struct ctx *c);
int round_exec(struct ctx *c);
int exec_child(int argc, char **argv);

/* ptstress-worker.c */
int worker_main(unsigned long w, int out);

/* ptstress-readers.c */
int reader_main(unsigned long index, unsigned long proc,
		const pid_t *workers, unsigned long nworkers, int out);

#endif /* LAB_PTSTRESS_H */

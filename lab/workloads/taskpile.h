/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * taskpile.h - what the files of taskpile share (see taskpile.c for what the
 * program does): the tasks' exit codes and ready records, and the memory
 * samples. taskpile is three files (taskpile.toml lists them): the parent
 * (taskpile.c), a task's life (taskpile-task.c) and reading /proc/meminfo and
 * /proc/zoneinfo (taskpile-sample.c).
 */
#ifndef LAB_TASKPILE_H
#define LAB_TASKPILE_H

#include "workload.h"

#define TASK_BAD_DATA		3	/* a touched page lost its pattern */
#define TASK_MMAP_FAILED	4
#define TASK_PIPE_FAILED	5

#define MIB			(1024UL * 1024UL)
#define BLOCK			(2 * MIB)	/* one PTE page maps 2 MiB (PAE) */

/* Ready records: task index << 8 | status. */
#define ST_READY		'R'
#define ST_MMAP_FAILED		'M'
#define ST_BAD_DATA		'V'

struct sample {
	unsigned long tasks;
	long page_tables_kb;
	long low_free_kb;
	long high_free_kb;
	long low_pcp_kb;	/* free pages on per-CPU lists, not in LowFree */
	long high_pcp_kb;
};

/* Lowmem not in use: free in the buddy allocator or on per-CPU lists. */
static inline long low_avail_kb(const struct sample *s)
{
	return s->low_free_kb + s->low_pcp_kb;
}

/* taskpile-sample.c */
int read_memory(struct sample *s, int *have_lowfree);

/* taskpile-task.c */
_Noreturn void task_main(unsigned long task, unsigned long span_mib,
			 int ready_w, int release_r);

#endif /* LAB_TASKPILE_H */

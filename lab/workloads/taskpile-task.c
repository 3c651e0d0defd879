// SPDX-License-Identifier: GPL-2.0-only
/*
 * taskpile-task.c - a task of the pile: it maps its span, touches one page
 * per 2 MiB (one PTE page each), reports ready, sleeps until released, and
 * checks its pages again before it exits.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "taskpile.h"

/* Never zero, and different for every (task, block). */
static inline uint32_t pattern(unsigned long task, unsigned long block)
{
	return ((uint32_t)(task + 1) * 0x9e3779b1u ^ (uint32_t)block << 1) | 1u;
}

static int check_blocks(const uint32_t *span, unsigned long task,
			unsigned long blocks)
{
	size_t stride = BLOCK / sizeof(uint32_t);
	unsigned long b;

	for (b = 0; b < blocks; b++)
		if (span[b * stride] != pattern(task, b))
			return -1;
	return 0;
}

static void send_status(int fd, unsigned long task, int status)
{
	uint32_t rec = (uint32_t)task << 8 | (uint32_t)status;

	if (write(fd, &rec, sizeof(rec)) != sizeof(rec))
		_exit(TASK_PIPE_FAILED);
}

/* Runs in each task: map, touch one page per 2 MiB, report, sleep, check. */
_Noreturn void task_main(unsigned long task, unsigned long span_mib,
				int ready_w, int release_r)
{
	unsigned long blocks = (span_mib * MIB + BLOCK - 1) / BLOCK, b;
	size_t stride = BLOCK / sizeof(uint32_t);
	uint32_t *span;
	int status = ST_READY;
	char c;
	void *p;

	p = mmap(NULL, span_mib * MIB, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		send_status(ready_w, task, ST_MMAP_FAILED);
		_exit(TASK_MMAP_FAILED);
	}
	/* The status byte's high bit says MADV_NOHUGEPAGE was accepted. */
	if (!madvise(p, span_mib * MIB, MADV_NOHUGEPAGE))
		status |= 0x80;
	span = p;
	for (b = 0; b < blocks; b++)
		span[b * stride] = pattern(task, b);
	barrier();
	if (check_blocks(span, task, blocks)) {
		send_status(ready_w, task, ST_BAD_DATA);
		_exit(TASK_BAD_DATA);
	}
	send_status(ready_w, task, status);

	/* Sleep until the parent closes the release pipe (EOF). */
	while (read(release_r, &c, 1) != 0)
		if (errno != EINTR)
			break;
	barrier();
	_exit(check_blocks(span, task, blocks) ? TASK_BAD_DATA : 0);
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * taskpile - pile up sleeping tasks that each hold many sparse PTE pages.
 *
 * Stresses: lowmem spent on page tables, the 2003 motivation for HIGHPTE.
 * Each task maps --span_mib MiB of anonymous memory and writes one page every
 * 2 MiB, so it holds span_mib / 2 PTE pages (one per touched 2 MiB block)
 * for only span_mib / 2 data pages. Data pages come from highmem either way;
 * PTE pages come from lowmem without HIGHPTE (or with userpte=nohigh) and
 * from highmem with it. Tasks are added --step at a time up to --tasks, and
 * memory is sampled before every step: PageTables grows linearly with the
 * tasks under both, free lowmem falls with it only when PTEs are in lowmem.
 * THP is turned off on the span (MADV_NOHUGEPAGE): with THP "always" (the
 * Debian 686-pae default) each touch would map a 2 MiB page and no PTE page.
 *
 * Usage: taskpile [--tasks N] [--step S] [--span_mib M] [--min_lowfree_mib F]
 *   --tasks N            most tasks, the unit of work
 *   --step S             tasks added between samples
 *   --span_mib M         MiB each task maps; it writes one page per 2 MiB
 *   --min_lowfree_mib F  free lowmem floor: no step is started that would
 *                        take free lowmem below it
 * (defaults and bounds: taskpile.toml)
 *
 * A sample holds PageTables, LowFree and HighFree from /proc/meminfo and
 * LowPcp and HighPcp, the pages on the per-CPU free lists from the pagesets
 * in /proc/zoneinfo. LowFree and HighFree leave those out, and in the 8 GiB
 * guest a CPU keeps up to ~21 MiB of lowmem and ~45 MiB of highmem there:
 * the first tens of MiB of page tables can come and go without moving
 * LowFree at all. Free lowmem is therefore LowFree + LowPcp.
 *
 * Before each step the floor is checked against a prediction: free lowmem
 * minus the tasks to add times the drop per task measured in the last step.
 * Before the first step the drop is guessed at its worst, span_mib / 2 PTE
 * pages plus 64 KiB of kernel memory per task; a step in which free lowmem
 * did not fall keeps the previous figure. A step is shortened to what fits;
 * when not one more task fits, the run stops with "lowmem_floor". It also
 * stops when it reaches --tasks ("max_tasks"), when fork() fails
 * ("fork_failed"), when a task's mmap fails ("mmap_failed"), when the OOM
 * killer has killed a task ("oom_killed"), or, counted as an error, when
 * the /proc files cannot be read after a step ("meminfo_failed"). Without
 * CONFIG_HIGHMEM (e.g. on a 64-bit host) meminfo has no LowFree: MemFree is
 * used instead, HighFree and HighPcp are 0, and "low_source" says
 * "MemFree".
 *
 * Each task tells the parent it is ready through a pipe, then sleeps in
 * read() on a second pipe; at the end the parent closes that pipe's write
 * end, every task wakes, checks its pages again and exits, and the parent
 * reaps them all.
 *
 * Self-check: each task writes a pattern derived from (task, block) into
 * every page it touches and reads it back before reporting ready, and again
 * after it is woken to exit; a mismatch is an error. A task killed by
 * SIGKILL that the parent did not kill is counted in "oom_killed" (not an
 * error: it is the kernel's answer to the load); any other unexpected exit
 * or signal is an error.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"workload":"taskpile","unit":"task","ops":64,"errors":0,
 *    "elapsed_ns":123456789,"params":{"tasks":64,"step":8,"span_mib":256,
 *    "min_lowfree_mib":64},"stopped_because":"max_tasks","oom_killed":0,
 *    "low_source":"LowFree","pte_pages_per_task":128,"nohugepage":true,
 *    "samples":[{"tasks":0,"PageTables_kB":512,"LowFree_kB":650000,
 *    "HighFree_kB":7600000,"LowPcp_kB":9000,"HighPcp_kB":40000},...]}
 * (on one line); ops is the most tasks alive at once. Exit 0 if errors == 0,
 * 1 otherwise, 2 on bad arguments.
 * Built static for i386 by lab/guest/image.py from the files taskpile.toml
 * lists (see taskpile.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

#include "taskpile.h"

#define KERNEL_KB_PER_TASK	64	/* first-step guess: stack, mm, pgd, pmds */

enum task_state { T_PENDING, T_READY, T_FAILED, T_GONE };

static struct param params[] = PARAM_TABLE;

struct pile {
	pid_t *pid;
	unsigned char *state;		/* enum task_state */
	unsigned char *counted;		/* resolved for the step that forked it */
	unsigned long forked;		/* tasks started so far (indices used) */
	unsigned long alive;		/* ready and not yet gone */
	unsigned long pending;		/* forked in this step, not resolved */
	unsigned long oom_killed;
	unsigned long errors;
	int mmap_failed;
	int nohuge;
};

static void print_usage(FILE *f)
{
	fprintf(f, "usage: taskpile [--tasks N] [--step S] [--span_mib M] [--min_lowfree_mib F]\n");
}

static unsigned long find_task(const struct pile *pl, pid_t pid)
{
	unsigned long i;

	for (i = 0; i < pl->forked; i++)
		if (pl->pid[i] == pid)
			return i;
	return pl->forked;
}

/* A task of this step has resolved (ready, failed or dead). */
static void resolve(struct pile *pl, unsigned long i)
{
	if (!pl->counted[i]) {
		pl->counted[i] = 1;
		pl->pending--;
	}
}

static void on_record(struct pile *pl, uint32_t rec)
{
	unsigned long i = rec >> 8;
	int status = rec & 0x7f;

	if (i >= pl->forked) {
		fprintf(stderr, "taskpile: bad ready record %#x\n", rec);
		pl->errors++;
		return;
	}
	resolve(pl, i);
	if (status == ST_READY) {
		if (pl->state[i] == T_PENDING) {	/* not dead already */
			pl->state[i] = T_READY;
			pl->alive++;
		}
		if (rec & 0x80)
			pl->nohuge = 1;
		return;
	}
	if (pl->state[i] == T_PENDING)
		pl->state[i] = T_FAILED;
	if (status == ST_MMAP_FAILED) {
		if (!pl->mmap_failed)
			fprintf(stderr, "taskpile: task %lu: mmap of its span failed\n",
				i);
		pl->mmap_failed = 1;
	} else {
		fprintf(stderr, "taskpile: task %lu: pages lost their pattern\n", i);
		pl->errors++;
	}
}

/*
 * A task has exited or died. "released" is set once the parent has closed
 * the release pipe; before that, only failures a task reports in its record
 * (which it always writes before exiting) are expected.
 */
static void on_exit_status(struct pile *pl, pid_t pid, int status,
			   int released)
{
	unsigned long i = find_task(pl, pid);
	int prev, code;

	if (i == pl->forked)
		return;
	prev = pl->state[i];
	if (prev == T_READY)
		pl->alive--;
	pl->state[i] = T_GONE;
	resolve(pl, i);
	if (WIFSIGNALED(status)) {
		if (WTERMSIG(status) == SIGKILL) {	/* we never send it */
			if (pl->oom_killed++ < 3)
				fprintf(stderr, "taskpile: task %lu killed by SIGKILL (OOM killer?)\n",
					i);
			return;
		}
		fprintf(stderr, "taskpile: task %lu killed by signal %d\n", i,
			WTERMSIG(status));
		pl->errors++;
		return;
	}
	code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	if (code == 0 && released)
		return;
	if ((code == TASK_MMAP_FAILED || code == TASK_BAD_DATA) &&
	    prev != T_READY)
		return;		/* counted from its record */
	fprintf(stderr, "taskpile: task %lu exited %d%s\n", i, code,
		code == TASK_BAD_DATA ? " (pages lost their pattern)" : "");
	pl->errors++;
}

/* Collect exited tasks without blocking. */
static void sweep(struct pile *pl)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		on_exit_status(pl, pid, status, 0);
}

/* Read every record waiting in the (non-blocking) ready pipe. */
static void drain(struct pile *pl, int ready_r)
{
	uint32_t recs[256];
	ssize_t n, k;

	/* Records are written whole (4 bytes < PIPE_BUF). */
	while ((n = read(ready_r, recs, sizeof(recs))) > 0)
		for (k = 0; k < n / (ssize_t)sizeof(recs[0]); k++)
			on_record(pl, recs[k]);
}

/* Wait until every task forked in this step is ready, failed or dead. */
static void wait_step(struct pile *pl, int ready_r)
{
	struct pollfd pfd = { .fd = ready_r, .events = POLLIN };

	while (pl->pending) {
		if (poll(&pfd, 1, 200) > 0)
			drain(pl, ready_r);
		sweep(pl);
	}
	drain(pl, ready_r);	/* a task reaped before its record was read */
}

static void print_report(const struct pile *pl, unsigned long ops,
			 long long elapsed, const char *why, int have_lowfree,
			 const struct sample *samples, unsigned long nsamples)
{
	unsigned long i;

	printf("{\"workload\":\"taskpile\",\"unit\":\"task\",");
	printf("\"ops\":%lu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       ops, pl->errors, elapsed);
	printf("\"params\":{\"tasks\":%ld,\"step\":%ld,\"span_mib\":%ld,\"min_lowfree_mib\":%ld},",
	       params[PARAM_TASKS].value, params[PARAM_STEP].value,
	       params[PARAM_SPAN_MIB].value, params[PARAM_MIN_LOWFREE_MIB].value);
	printf("\"stopped_because\":\"%s\",\"oom_killed\":%lu,", why,
	       pl->oom_killed);
	printf("\"low_source\":\"%s\",\"pte_pages_per_task\":%lu,",
	       have_lowfree ? "LowFree" : "MemFree",
	       (params[PARAM_SPAN_MIB].value * MIB + BLOCK - 1) / BLOCK);
	printf("\"nohugepage\":%s,\"samples\":[", pl->nohuge ? "true" : "false");
	for (i = 0; i < nsamples; i++)
		printf("%s{\"tasks\":%lu,\"PageTables_kB\":%ld,\"LowFree_kB\":%ld,\"HighFree_kB\":%ld,\"LowPcp_kB\":%ld,\"HighPcp_kB\":%ld}",
		       i ? "," : "", samples[i].tasks,
		       samples[i].page_tables_kb, samples[i].low_free_kb,
		       samples[i].high_free_kb, samples[i].low_pcp_kb,
		       samples[i].high_pcp_kb);
	printf("]}\n");
}

int main(int argc, char **argv)
{
	unsigned long max_tasks, step, span_mib, floor_kb, ops = 0;
	unsigned long nsamples = 0, n, i, added;
	long per_task_kb, headroom_kb, drop_kb;
	struct sample *samples;
	struct pile pl = { 0 };
	int ready[2], release[2], have_lowfree = 0, status;
	const char *why = NULL;
	long long t0, t1;
	pid_t pid;

	parse_params("taskpile", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	max_tasks = params[PARAM_TASKS].value;
	step = params[PARAM_STEP].value;
	span_mib = params[PARAM_SPAN_MIB].value;
	floor_kb = params[PARAM_MIN_LOWFREE_MIB].value * 1024UL;
	/* First-step guess: every PTE page in lowmem (page size from sysconf). */
	per_task_kb = (long)((span_mib * MIB + BLOCK - 1) / BLOCK *
			     (sysconf(_SC_PAGESIZE) / 1024)) + KERNEL_KB_PER_TASK;

	pl.pid = calloc(max_tasks, sizeof(*pl.pid));
	pl.state = calloc(max_tasks, 1);
	pl.counted = calloc(max_tasks, 1);
	samples = calloc(max_tasks + 2, sizeof(*samples));
	if (!pl.pid || !pl.state || !pl.counted || !samples) {
		fprintf(stderr, "taskpile: out of memory\n");
		return 1;
	}
	if (pipe(ready) || pipe(release) ||
	    fcntl(ready[0], F_SETFL, O_NONBLOCK)) {
		fprintf(stderr, "taskpile: pipe: %s\n", strerror(errno));
		return 1;
	}
	if (read_memory(&samples[0], &have_lowfree)) {
		fprintf(stderr, "taskpile: cannot read PageTables/LowFree from /proc/meminfo or /proc/zoneinfo\n");
		return 1;
	}
	fflush(NULL);	/* tasks must not inherit buffered output */

	t0 = now_ns();
	nsamples = 1;
	for (;;) {
		struct sample *last = &samples[nsamples - 1];

		if (pl.oom_killed) {
			why = "oom_killed";
			break;
		}
		n = max_tasks - pl.forked;
		if (n > step)
			n = step;
		if (!n) {
			why = "max_tasks";
			break;
		}
		headroom_kb = low_avail_kb(last) - (long)floor_kb;
		if (headroom_kb <= 0)
			n = 0;
		else if (per_task_kb > 0 && headroom_kb / per_task_kb < (long)n)
			n = headroom_kb / per_task_kb;
		if (!n) {
			why = "lowmem_floor";
			break;
		}

		added = pl.alive;
		for (i = 0; i < n; i++) {
			unsigned long t = pl.forked;

			pid = fork();
			if (pid == 0) {
				close(ready[0]);
				close(release[1]);
				task_main(t, span_mib, ready[1], release[0]);
			}
			if (pid < 0) {
				fprintf(stderr, "taskpile: fork after %lu tasks: %s\n",
					t, strerror(errno));
				why = "fork_failed";
				break;
			}
			pl.pid[t] = pid;
			pl.forked++;
			pl.pending++;
		}
		wait_step(&pl, ready[0]);
		sweep(&pl);
		if (!why && pl.mmap_failed)
			why = "mmap_failed";

		if (read_memory(&samples[nsamples], &have_lowfree)) {
			fprintf(stderr, "taskpile: cannot read /proc/meminfo or /proc/zoneinfo\n");
			pl.errors++;
			why = why ? why : "meminfo_failed";
			break;
		}
		samples[nsamples].tasks = pl.alive;
		if (pl.alive > ops)
			ops = pl.alive;
		/* The drop per task added in this step predicts the next. */
		added = pl.alive > added ? pl.alive - added : 0;
		drop_kb = low_avail_kb(last) - low_avail_kb(&samples[nsamples]);
		if (added && drop_kb > 0)	/* else keep the last estimate */
			per_task_kb = drop_kb / (long)added;
		nsamples++;
		if (why)
			break;
	}

	/* Wake every task: EOF on the release pipe, then reap them all. */
	close(release[1]);
	while ((pid = waitpid(-1, &status, 0)) > 0 || errno == EINTR)
		if (pid > 0)
			on_exit_status(&pl, pid, status, 1);
	drain(&pl, ready[0]);
	t1 = now_ns();

	print_report(&pl, ops, t1 - t0, why, have_lowfree, samples, nsamples);
	return pl.errors ? 1 : 0;
}

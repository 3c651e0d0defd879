// SPDX-License-Identifier: GPL-2.0-only
/*
 * execstorm - fork children that each exec a small static program.
 *
 * Stresses: exec. Each child is a fork of the parent (page-table copy), then
 * execve() throws that mm away and builds a new one: pgd_alloc and the PMD
 * pages, PTE pages for the stack, the binary and the heap, faults on the
 * program's text and data (file-backed and anonymous), then exit tears it all
 * down again with TLB flushes. The exec target is this program itself, run
 * with --child, which returns 0 at once: no extra binary is needed.
 *
 * Usage: execstorm [--execs N] [--concurrency C]
 *        execstorm --child
 *   --execs N        total fork+exec, the unit
 *   --concurrency C  most children alive at once
 *   --child          exit 0 at once (the exec target)
 * (defaults and bounds: execstorm.toml)
 *
 * Self-check: a child can only exit 0 by running the exec'd "--child" image
 * (when execve fails the forked child exits 127). Every child must exit 0;
 * other exits, deaths by signal and fork failures are errors. The program
 * finds itself through /proc/self/exe, or argv[0] when that has a '/'.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"workload":"execstorm","unit":"exec","ops":300,"errors":0,
 *    "elapsed_ns":123456789,"params":{"execs":300,"concurrency":2}}
 * (on one line). Exit 0 if errors == 0, 1 otherwise, 2 on bad arguments.
 * Built static for i386 by lab/guest/image.py (see workload.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workload.h"

static struct param params[] = PARAM_TABLE;

static void print_usage(FILE *f)
{
	fprintf(f, "usage: execstorm [--execs N] [--concurrency C]\n"
		   "       execstorm --child\n");
}

struct run {
	const char *self;
	unsigned long ops, errors, fork_errors;
};

static pid_t start_child(unsigned long i, void *arg)
{
	const struct run *run = arg;
	pid_t pid = fork();

	(void)i;
	if (pid == 0) {
		execl(run->self, "execstorm", "--child", (char *)NULL);
		_exit(CHILD_EXEC_FAILED);
	}
	return pid;
}

static void fork_failed(unsigned long i, int err, void *arg)
{
	struct run *run = arg;

	(void)i;
	if (!run->fork_errors)
		fprintf(stderr, "execstorm: fork: %s\n", strerror(err));
	run->fork_errors++;
}

/* Only a child that ran the exec'd image to exit 0 is an exec done. */
static int reaped(pid_t pid, int status, void *arg)
{
	struct run *run = arg;
	int failed = child_failed("execstorm", pid, status);

	run->ops += !failed;
	run->errors += failed;
	return 1;
}

int main(int argc, char **argv)
{
	char self[PATH_MAX];
	struct run run = { .self = self };
	struct stream stream = {
		.start = start_child, .start_failed = fork_failed,
		.reaped = reaped, .arg = &run,
	};
	unsigned long execs, concurrency;
	long long t0, t1;

	if (argc == 2 && !strcmp(argv[1], "--child"))
		return 0;
	parse_params("execstorm", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	execs = params[PARAM_EXECS].value;
	concurrency = params[PARAM_CONCURRENCY].value;
	if (find_self(argv[0], self, sizeof(self))) {
		fprintf(stderr, "execstorm: cannot find my own path (no /proc/self/exe, argv[0] '%s')\n",
			argv[0]);
		return 1;
	}
	stream.total = execs;
	stream.concurrency = concurrency;
	fflush(NULL);	/* children must not inherit buffered output */

	t0 = now_ns();
	run_stream(&stream);
	t1 = now_ns();
	run.errors += run.fork_errors;

	printf("{\"workload\":\"execstorm\",\"unit\":\"exec\",");
	printf("\"ops\":%lu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       run.ops, run.errors, t1 - t0);
	printf("\"params\":{\"execs\":%lu,\"concurrency\":%lu}}\n",
	       execs, concurrency);
	return run.errors ? 1 : 0;
}

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
 *   --execs N        total fork+exec, the unit (1..1000000, default 300)
 *   --concurrency C  most children alive at once (1..1024, default 2)
 *   --child          exit 0 at once (the exec target)
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
 * Built static for i386: gcc -m32 -static -O2 -Wall -Wextra execstorm.c
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

static struct param params[] = {
	{ "execs",        300, 1, 1000000 },
	{ "concurrency",    2, 1,    1024 },
};

static void print_usage(FILE *f)
{
	fprintf(f, "usage: execstorm [--execs N] [--concurrency C]\n"
		   "       execstorm --child\n");
}

int main(int argc, char **argv)
{
	unsigned long execs, concurrency, i, alive = 0;
	unsigned long ops = 0, errors = 0, fork_errors = 0;
	char self[PATH_MAX];
	long long t0, t1;
	int r;

	if (argc == 2 && !strcmp(argv[1], "--child"))
		return 0;
	parse_params("execstorm", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	execs = params[0].value;
	concurrency = params[1].value;
	if (find_self(argv[0], self, sizeof(self))) {
		fprintf(stderr, "execstorm: cannot find my own path (no /proc/self/exe, argv[0] '%s')\n",
			argv[0]);
		return 1;
	}
	fflush(NULL);	/* children must not inherit buffered output */

	t0 = now_ns();
	for (i = 0; i < execs; i++) {
		pid_t pid;

		while (alive >= concurrency) {
			r = reap_one("execstorm");
			if (r < 0) {	/* no children left: cannot happen */
				alive = 0;
				break;
			}
			alive--;
			ops += !r;
			errors += r;
		}
		pid = fork();
		if (pid == 0) {
			execl(self, "execstorm", "--child", (char *)NULL);
			_exit(CHILD_EXEC_FAILED);
		}
		if (pid < 0) {
			if (!fork_errors)
				fprintf(stderr, "execstorm: fork: %s\n",
					strerror(errno));
			fork_errors++;
			continue;
		}
		alive++;
	}
	while (alive && (r = reap_one("execstorm")) >= 0) {
		alive--;
		ops += !r;
		errors += r;
	}
	t1 = now_ns();
	errors += fork_errors;

	printf("{\"workload\":\"execstorm\",\"unit\":\"exec\",");
	printf("\"ops\":%lu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       ops, errors, t1 - t0);
	printf("\"params\":{\"execs\":%lu,\"concurrency\":%lu}}\n",
	       execs, concurrency);
	return errors ? 1 : 0;
}

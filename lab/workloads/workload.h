/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * workload.h - what every lab workload program shares.
 *
 * One argument parser and one clock for every workload, so that bounds,
 * --help, error messages and exit codes behave the same in all of them (the
 * lab and the host tests rely on "PROG: ..." messages and exit 2 on bad
 * input), and elapsed_ns means the same thing in every report. Also the
 * child-reaping loops the fork-based workloads have in common.
 *
 * Each program keeps its own "static struct param params[]" table in its .c
 * file (the host tests read that table and compare it with the TOML spec),
 * then calls parse_params() on it. Everything here is static inline, so a
 * program is still built from its one .c file:
 *   gcc -m32 -static -O2 -Wall -Wextra PROG.c
 */
#ifndef LAB_WORKLOAD_H
#define LAB_WORKLOAD_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))

#define EXIT_USAGE		2	/* bad arguments */
#define CHILD_EXEC_FAILED	127	/* a forked child could not exec */

/* One integer parameter, given as "--NAME VALUE", within min..max. */
struct param {
	const char *name;
	long value;		/* the default until parse_params() sets it */
	long min;
	long max;
};

/* Report a bad argument as "PROG: WHAT: 'ARG'", print usage, exit 2. */
static inline _Noreturn void usage_error(const char *prog,
					 void (*usage)(FILE *f),
					 const char *what, const char *arg)
{
	fprintf(stderr, "%s: %s: '%s'\n", prog, what, arg);
	usage(stderr);
	exit(EXIT_USAGE);
}

/*
 * Parse argv[1..] into params[0..n-1]. --help or -h prints usage to stdout
 * and exits 0; an unknown option, a missing value, a value that is not a
 * whole decimal long or one outside min..max exits EXIT_USAGE.
 *
 * @option, if not NULL, is offered each argument (after --help) before the
 * table: it handles options that are not workload parameters and returns how
 * many arguments it used, or 0 to leave argv[i] to the table.
 */
static inline void parse_params(const char *prog, struct param *params,
				size_t n, int argc, char **argv,
				void (*usage)(FILE *f),
				int (*option)(int argc, char **argv, int i))
{
	int i, used;
	size_t p;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		struct param *par = NULL;
		char *end;
		long v;

		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			usage(stdout);
			exit(0);
		}
		if (option) {
			used = option(argc, argv, i);
			if (used > 0) {
				i += used - 1;
				continue;
			}
		}
		for (p = 0; p < n; p++)
			if (!strncmp(arg, "--", 2) &&
			    !strcmp(arg + 2, params[p].name))
				par = &params[p];
		if (!par)
			usage_error(prog, usage, "unknown argument", arg);
		if (i + 1 >= argc)
			usage_error(prog, usage, "missing value for", arg);
		arg = argv[++i];
		errno = 0;
		v = strtol(arg, &end, 10);
		if (errno || end == arg || *end)
			usage_error(prog, usage, "not an integer", arg);
		if (v < par->min || v > par->max) {
			fprintf(stderr, "%s: --%s %ld out of bounds %ld..%ld\n",
				prog, par->name, v, par->min, par->max);
			exit(EXIT_USAGE);
		}
		par->value = v;
	}
}

/* CLOCK_MONOTONIC in nanoseconds: what every report's elapsed_ns counts. */
static inline long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Keeps the compiler from folding a read-back into the writes before it. */
static inline void barrier(void)
{
	__asm__ __volatile__("" : : : "memory");
}

/*
 * Reap any one child; returns 1 if it failed, 0 if it exited 0, -1 if there
 * is none. Only the first few failures are reported, as "PROG: child ...".
 */
static inline int reap_one(const char *prog)
{
	static unsigned int reported;
	int status;
	pid_t pid;

	do {
		pid = waitpid(-1, &status, 0);
	} while (pid < 0 && errno == EINTR);
	if (pid < 0)
		return -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (reported++ >= 3)
		return 1;
	if (WIFEXITED(status))
		fprintf(stderr, "%s: child %d exited %d%s\n", prog, (int)pid,
			WEXITSTATUS(status),
			WEXITSTATUS(status) == CHILD_EXEC_FAILED ?
			" (exec failed)" : "");
	else
		fprintf(stderr, "%s: child %d killed by signal %d\n", prog,
			(int)pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return 1;
}

/*
 * Reap the children pids[0..procs-1] (pids <= 0 were never started); returns
 * the errors. Child i is fine if it sent its record (seen[i]) and exited 0 or
 * @recorded_failure (a failure already counted in its record); anything else
 * is an error, reported as "PROG: process I ...".
 */
static inline unsigned long reap_all(const char *prog, const pid_t *pids,
				     unsigned long procs,
				     const unsigned char *seen,
				     int recorded_failure)
{
	unsigned long left = 0, errors = 0, i;
	int status;
	pid_t pid;

	for (i = 0; i < procs; i++)
		left += pids[i] > 0;
	while (left) {
		pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < procs && pids[i] != pid; i++)
			;
		if (i == procs)
			continue;
		left--;
		if (seen[i] && WIFEXITED(status) &&
		    (WEXITSTATUS(status) == 0 ||
		     WEXITSTATUS(status) == recorded_failure))
			continue;	/* any failure is in its record */
		errors++;
		if (WIFSIGNALED(status))
			fprintf(stderr, "%s: process %lu killed by signal %d\n",
				prog, i, WTERMSIG(status));
		else
			fprintf(stderr, "%s: process %lu exited %d%s\n",
				prog, i, WEXITSTATUS(status),
				seen[i] ? "" : " without sending its counts");
	}
	return errors;
}

/*
 * The path to exec to run this program again (execstorm, ptstress): /proc/self/exe
 * resolved, else argv[0] if it is a path. 0 on success, -1 if neither works.
 */
static inline int find_self(const char *argv0, char *buf, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);

	if (n > 0) {
		buf[n] = '\0';
		if (!access(buf, X_OK))
			return 0;
	}
	if (strchr(argv0, '/') && strlen(argv0) < size) {
		strcpy(buf, argv0);
		return 0;
	}
	return -1;
}

#endif /* LAB_WORKLOAD_H */

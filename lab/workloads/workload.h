/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * workload.h - what every lab workload program shares.
 *
 * One argument parser and one clock for every workload, so that bounds,
 * --help, error messages and exit codes behave the same in all of them (the
 * lab and the host tests rely on "PROG: ..." messages and exit 2 on bad
 * input), and elapsed_ns means the same thing in every report. Also the two
 * ways the fork-based workloads run children: a crew of N processes that each
 * send the parent one record (faultstorm, mmapchurn, ptstress), and a stream
 * of short-lived children with at most C alive at once (forkstorm, execstorm,
 * shellmix).
 *
 * A program's parameters, their defaults and bounds live in NAME.toml only:
 * the image builder (lab/guest/image.py) generates workload-params.h from it
 * (PARAM_<NAME> indices, PARAM_<NAME>_{DEFAULT,MIN,MAX} and PARAM_TABLE), puts
 * it on the include path, and each program declares
 *   static struct param params[] = PARAM_TABLE;
 * then calls parse_params() on it. Everything here is static inline, so a
 * program is built from its own .c files only:
 *   gcc -m32 -static -O2 -Wall -Wextra -I GENERATED_DIR PROG.c ...
 */
#ifndef LAB_WORKLOAD_H
#define LAB_WORKLOAD_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <workload-params.h>	/* generated from NAME.toml: -I only */

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
 * Whether a child's wait status is a failure (1) or a clean exit 0 (0). Only
 * the first few failures are reported, as "PROG: child PID ...".
 */
static inline int child_failed(const char *prog, pid_t pid, int status)
{
	static unsigned int reported;

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
 * A stream of @total children, at most @concurrency alive at once: the next
 * one starts as soon as there is room, else the parent waits for one to end.
 * Keeps the vCPUs busy with fork/exec/exit without letting a fork bomb grow.
 */
struct stream {
	unsigned long total;
	unsigned long concurrency;
	/* Fork child @i; its pid, or -1 with errno set if fork failed. */
	pid_t (*start)(unsigned long i, void *arg);
	/* fork failed for child @i (@err: its errno); it is not retried. */
	void (*start_failed)(unsigned long i, int err, void *arg);
	/* A child exited; 0 if @pid was not one of ours (not counted alive). */
	int (*reaped)(pid_t pid, int status, void *arg);
	void *arg;
};

static inline void run_stream(const struct stream *s)
{
	unsigned long next = 0, alive = 0;
	int status;
	pid_t pid;

	while (next < s->total || alive) {
		if (next < s->total && alive < s->concurrency) {
			pid = s->start(next, s->arg);
			if (pid < 0)
				s->start_failed(next, errno, s->arg);
			else
				alive++;
			next++;
			continue;
		}
		pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno != EINTR)
				alive = 0;	/* no children left: cannot happen */
			continue;
		}
		if (s->reaped(pid, status, s->arg))
			alive--;
	}
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
 * A crew: @n processes forked at once, each sending the parent one record of
 * a fixed size over a shared pipe (a single write, atomic below PIPE_BUF)
 * whose first member is a uint32_t naming its sender 0..n-1. The parent adds
 * up the records as they come and then reaps the crew; a process that dies,
 * sends nothing or sends garbage is an error, whatever the others did.
 */
struct crew {
	const char *prog;
	unsigned long n;
	pid_t *pids;		/* [n]; <= 0: never started */
	unsigned char *seen;	/* [n], zeroed; a record came from it */
	int fds[2];		/* the caller's pipe; fds[1]: the children's end */
};

/*
 * Fork the crew: process i runs body(i, fd, arg), fd being its end of the
 * pipe, and exits with what it returns. Returns the forks that failed.
 */
static inline unsigned long crew_fork(struct crew *c,
				      int (*body)(unsigned long i, int out,
						  void *arg),
				      void *arg)
{
	unsigned long i, errors = 0;

	for (i = 0; i < c->n; i++) {
		c->pids[i] = fork();
		if (c->pids[i] == 0) {
			close(c->fds[0]);
			_exit(body(i, c->fds[1], arg));
		}
		if (c->pids[i] < 0) {
			fprintf(stderr, "%s: fork: %s\n", c->prog,
				strerror(errno));
			errors++;
		}
	}
	close(c->fds[1]);	/* EOF once the last child has exited */
	return errors;
}

/*
 * Read the crew's records into @rec (@size bytes each), passing each to
 * add(rec, arg), until every process has closed the pipe; then reap them
 * (reap_all(), @recorded_failure as there). Returns the errors.
 *
 * With @deadline (CLOCK_MONOTONIC ns, 0: none), processes that have sent
 * nothing @grace ns after it are killed, and the records get 10 s more.
 */
static inline unsigned long crew_collect(struct crew *c, void *rec,
					 size_t size,
					 void (*add)(const void *rec,
						     void *arg),
					 void *arg, int recorded_failure,
					 long long deadline, long long grace)
{
	struct pollfd pfd = { .fd = c->fds[0], .events = POLLIN };
	unsigned long errors = 0, i;
	long long left;
	int killed = 0;
	uint32_t proc = 0;
	ssize_t n;

	for (;;) {
		if (deadline) {
			left = deadline + grace - now_ns();
			if (left <= 0 && !killed) {
				for (i = 0; i < c->n; i++) {
					if (c->pids[i] > 0 && !c->seen[i]) {
						fprintf(stderr, "%s: process %lu still running %lld s after the deadline: killed\n",
							c->prog, i,
							grace / 1000000000LL);
						kill(c->pids[i], SIGKILL);
					}
				}
				killed = 1;
			}
			if (killed)
				left = 10000000000LL;	/* 10 s for the records */
			n = poll(&pfd, 1, (int)(left / 1000000 + 1));
			if (n < 0 && errno == EINTR)
				continue;
			if (n == 0 && killed)
				break;
			if (n <= 0)
				continue;
		}
		n = read(c->fds[0], rec, size);
		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == (ssize_t)size)
			memcpy(&proc, rec, sizeof(proc));
		if (n != (ssize_t)size || proc >= c->n || c->seen[proc]) {
			fprintf(stderr, "%s: bad record from a child\n", c->prog);
			errors++;
			break;
		}
		c->seen[proc] = 1;
		add(rec, arg);
	}
	return errors + reap_all(c->prog, c->pids, c->n, c->seen,
				 recorded_failure);
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

// SPDX-License-Identifier: GPL-2.0-only
/*
 * shellmix - shell scripts running small text tools over a tree of files.
 *
 * Stresses: a process mix in the spirit of SDET and kernbench, where page
 * tables are short-lived. The program writes a tree of --files small text
 * files under a fresh directory in /tmp (tmpfs in the guest), then runs
 * --scripts shell scripts, at most --concurrency at once, each as
 * "sh -c SCRIPT". A script runs ls, grep, sed, cat, wc and sort in pipelines
 * and command substitutions: every command is a fork of the shell, and with
 * busybox most are also an exec of /bin/busybox (ls and sort are "noexec"
 * applets: fork only). So the mix is fork, exec, short process lifetimes with
 * few pages each, pipes and tmpfs reads and writes.
 *
 * Usage: shellmix [--files F] [--scripts S] [--concurrency C]
 *                 [--shell PATH] [--dir PATH]
 *   --files F          files in the tree
 *   --scripts S        scripts to run, the unit of work
 *   --concurrency C    most scripts running at once
 *   --shell PATH       the shell (default /bin/sh)
 *   --dir PATH         where the tree is made (default /tmp)
 * --shell and --dir are not workload parameters: the lab always uses their
 * defaults; they let host tests run the program against a chosen shell.
 * Scripts use only POSIX options, so busybox and GNU tools give the same
 * output. Commands are found through PATH (busybox sh prefers its applets).
 *
 * File i (0-based) is d<i%5>/f<i, 4 digits>.txt with 8 + i % 13 lines, line j
 * reading "file <i> line <j> w<(7i + 3j) % 10>". Script s looks for the
 * lines ending in " w<s % 10>" and prints five numbers: files listed by ls,
 * lines in all files (cat | wc), matching lines (grep | wc), distinct files
 * with a match (grep | sed | sort -u | wc) and matching lines it saved to a
 * file of its own with sed | sort and counted with grep -c.
 *
 * Self-check: each script's stdout goes to a file, and the program compares
 * the five numbers with the ones it computes from what it wrote; a script
 * that exits non-zero, prints something else, or cannot be forked is an
 * error. The tree is removed at the end.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"workload":"shellmix","unit":"script","ops":8,"errors":0,
 *    "elapsed_ns":123456789,"params":{"files":50,"scripts":8,
 *    "concurrency":4},"shell":"/bin/sh"}
 * (on one line); ops counts scripts run and reaped (a failed one is also an
 * error). Only the scripts are timed, not building or removing the tree.
 * Exit 0 if errors == 0, 1 otherwise, 2 on bad arguments.
 * Built static for i386 by lab/guest/image.py (see workload.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workload.h"

#define NDIRS			5
#define NWORDS			10
#define MAX_CONCURRENCY		PARAM_CONCURRENCY_MAX

static struct param params[] = PARAM_TABLE;

/* Options that are paths, not spec parameters. */
static const char *shell = "/bin/sh";
static const char *base_dir = "/tmp";

/* What script s must print, computed while writing the tree. */
struct expect {
	long files;
	long lines;
	long hits[NWORDS];	/* lines ending in " w<k>" */
	long owners[NWORDS];	/* files with at least one such line */
};

/*
 * The script; %d is the word it looks for (twice), %ld the script number
 * (twice). Run with the tree as its working directory.
 */
static const char script_fmt[] =
	"files=$(ls d0 d1 d2 d3 d4 | grep -c '^f[0-9]*\\.txt$')\n"
	"lines=$(cat d*/f*.txt | wc -l)\n"
	"hits=$(grep -h ' w%d$' d*/f*.txt | wc -l)\n"
	"owners=$(grep -h ' w%d$' d*/f*.txt | sed 's/^file \\([0-9]*\\) .*/\\1/' | sort -n -u | wc -l)\n"
	"sed -n '/ w%d$/s/ line / LINE /p' d*/f*.txt | sort > out/s%ld.txt\n"
	"saved=$(grep -c ' LINE ' out/s%ld.txt)\n"
	"echo $files $lines $hits $owners $saved\n";

static void print_usage(FILE *f)
{
	fprintf(f, "usage: shellmix [--files F] [--scripts S] [--concurrency C]\n"
		   "                [--shell PATH] [--dir PATH]\n");
}

static _Noreturn void bad_arg(const char *what, const char *arg)
{
	usage_error("shellmix", print_usage, what, arg);
}

/* parse_params() hook: --shell PATH and --dir PATH; returns arguments used. */
static int path_option(int argc, char **argv, int i)
{
	const char *arg = argv[i];

	if (strcmp(arg, "--shell") && strcmp(arg, "--dir"))
		return 0;
	if (i + 1 >= argc)
		bad_arg("missing value for", arg);
	if (argv[i + 1][0] != '/')
		bad_arg("not an absolute path", argv[i + 1]);
	if (!strcmp(arg, "--shell"))
		shell = argv[i + 1];
	else
		base_dir = argv[i + 1];
	return 2;
}

static void file_name(char *buf, size_t size, long i)
{
	snprintf(buf, size, "d%ld/f%04ld.txt", i % NDIRS, i);
}

/* Write the tree under the current directory and fill in the expectations. */
static int make_tree(long files, struct expect *ex)
{
	char name[32], dir[8], line[64];
	long i, j, nlines;
	int fd, k, len, seen[NWORDS];

	memset(ex, 0, sizeof(*ex));
	for (i = 0; i < NDIRS; i++) {
		snprintf(dir, sizeof(dir), "d%ld", i);
		if (mkdir(dir, 0700))
			return -1;
	}
	if (mkdir("out", 0700))
		return -1;
	for (i = 0; i < files; i++) {
		file_name(name, sizeof(name), i);
		fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd < 0)
			return -1;
		memset(seen, 0, sizeof(seen));
		nlines = 8 + i % 13;
		for (j = 0; j < nlines; j++) {
			k = (int)((7 * i + 3 * j) % NWORDS);
			len = snprintf(line, sizeof(line),
				       "file %ld line %ld w%d\n", i, j, k);
			if (write(fd, line, len) != len) {
				close(fd);
				return -1;
			}
			ex->hits[k]++;
			seen[k] = 1;
		}
		if (close(fd))
			return -1;
		for (k = 0; k < NWORDS; k++)
			ex->owners[k] += seen[k];
		ex->lines += nlines;
		ex->files++;
	}
	return 0;
}

static void remove_tree(long files, long scripts)
{
	char name[32];
	long i;

	for (i = 0; i < files; i++) {
		file_name(name, sizeof(name), i);
		unlink(name);
	}
	for (i = 0; i < scripts; i++) {
		snprintf(name, sizeof(name), "out/s%ld.txt", i);
		unlink(name);
		snprintf(name, sizeof(name), "out/r%ld.txt", i);
		unlink(name);
	}
	for (i = 0; i < NDIRS; i++) {
		snprintf(name, sizeof(name), "d%ld", i);
		rmdir(name);
	}
	rmdir("out");
}

/* Fork script s with stdout to out/r<s>.txt; returns the pid or -1. */
static pid_t start_script(long s)
{
	char script[sizeof(script_fmt) + 64], out[32];
	int k = (int)(s % NWORDS), fd;
	pid_t pid;

	snprintf(script, sizeof(script), script_fmt, k, k, k, s, s);
	snprintf(out, sizeof(out), "out/r%ld.txt", s);
	pid = fork();
	if (pid)
		return pid;
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, 1) < 0)
		_exit(CHILD_EXEC_FAILED);
	close(fd);
	execl(shell, "sh", "-c", script, (char *)NULL);
	fprintf(stderr, "shellmix: cannot execute %s: %s\n", shell,
		strerror(errno));
	_exit(CHILD_EXEC_FAILED);
}

/* Compare script s's output with what it must be; returns 0 if it matches. */
static int check_script(long s, const struct expect *ex)
{
	long got[5], want[5];
	char name[32], buf[256];
	ssize_t n;
	int fd, i, k = (int)(s % NWORDS);
	char *p, *end;

	snprintf(name, sizeof(name), "out/r%ld.txt", s);
	fd = open(name, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "shellmix: script %ld: %s: %s\n", s, name,
			strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(name);
	snprintf(name, sizeof(name), "out/s%ld.txt", s);
	unlink(name);
	buf[n > 0 ? n : 0] = '\0';
	want[0] = ex->files;
	want[1] = ex->lines;
	want[2] = ex->hits[k];
	want[3] = ex->owners[k];
	want[4] = ex->hits[k];
	for (i = 0, p = buf; i < 5; i++, p = end) {
		got[i] = strtol(p, &end, 10);
		if (end == p)
			break;
	}
	if (i == 5 && *end == '\n' && !end[1] &&
	    !memcmp(got, want, sizeof(got)))
		return 0;
	fprintf(stderr, "shellmix: script %ld printed '%.*s', expected %ld %ld %ld %ld %ld\n",
		s, (int)strcspn(buf, "\n"), buf, want[0], want[1], want[2],
		want[3], want[4]);
	return -1;
}

/* Print a string as a JSON string. */
static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* The scripts running, by slot: which pid runs which script. */
struct run {
	pid_t running[MAX_CONCURRENCY];
	long script_of[MAX_CONCURRENCY];
	long ops, errors, reported;
	struct expect ex;
};

static pid_t start_child(unsigned long i, void *arg)
{
	struct run *run = arg;
	long slot;
	pid_t pid;

	for (slot = 0; run->running[slot]; slot++)
		;
	pid = start_script((long)i);
	if (pid > 0) {
		run->running[slot] = pid;
		run->script_of[slot] = (long)i;
	}
	return pid;
}

/* A script that could not start is an error, and not a script run. */
static void fork_failed(unsigned long i, int err, void *arg)
{
	struct run *run = arg;

	(void)i;
	if (run->reported++ < 3)
		fprintf(stderr, "shellmix: fork: %s\n", strerror(err));
	run->errors++;
}

static int reaped(pid_t pid, int status, void *arg)
{
	struct run *run = arg;
	long slot;

	for (slot = 0; slot < MAX_CONCURRENCY && run->running[slot] != pid;
	     slot++)
		;
	if (slot == MAX_CONCURRENCY)
		return 0;
	run->running[slot] = 0;
	run->ops++;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		if (run->reported++ < 3)
			fprintf(stderr, "shellmix: script %ld: %s %d\n",
				run->script_of[slot],
				WIFEXITED(status) ? "exit status" : "signal",
				WIFEXITED(status) ? WEXITSTATUS(status) :
				WTERMSIG(status));
		run->errors++;
		return 1;
	}
	if (check_script(run->script_of[slot], &run->ex))
		run->errors++;
	return 1;
}

int main(int argc, char **argv)
{
	static struct run run;
	struct stream stream = {
		.start = start_child, .start_failed = fork_failed,
		.reaped = reaped, .arg = &run,
	};
	long files, scripts, concurrency;
	char tree[PATH_MAX], cwd[PATH_MAX];
	long long t0, t1;

	parse_params("shellmix", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, path_option);
	files = params[PARAM_FILES].value;
	scripts = params[PARAM_SCRIPTS].value;
	concurrency = params[PARAM_CONCURRENCY].value;

	if (access(shell, X_OK)) {
		fprintf(stderr, "shellmix: shell %s: %s\n", shell, strerror(errno));
		return 1;
	}
	if (!getcwd(cwd, sizeof(cwd)))
		strcpy(cwd, "/");
	snprintf(tree, sizeof(tree), "%s/shellmix.%d", base_dir, (int)getpid());
	if (mkdir(tree, 0700) || chdir(tree)) {
		fprintf(stderr, "shellmix: %s: %s\n", tree, strerror(errno));
		return 1;
	}
	if (make_tree(files, &run.ex)) {
		fprintf(stderr, "shellmix: writing the tree in %s: %s\n", tree,
			strerror(errno));
		remove_tree(files, 0);
		if (chdir(cwd) == 0)
			rmdir(tree);
		return 1;
	}
	fflush(NULL);	/* children must not inherit buffered output */

	stream.total = (unsigned long)scripts;
	stream.concurrency = (unsigned long)concurrency;
	t0 = now_ns();
	run_stream(&stream);
	t1 = now_ns();

	remove_tree(files, scripts);
	if (chdir(cwd) || rmdir(tree)) {
		fprintf(stderr, "shellmix: cannot remove %s: %s\n", tree,
			strerror(errno));
		run.errors++;
	}

	printf("{\"workload\":\"shellmix\",\"unit\":\"script\",");
	printf("\"ops\":%ld,\"errors\":%ld,\"elapsed_ns\":%lld,",
	       run.ops, run.errors, t1 - t0);
	printf("\"params\":{\"files\":%ld,\"scripts\":%ld,\"concurrency\":%ld},",
	       files, scripts, concurrency);
	printf("\"shell\":");
	json_string(shell);
	printf("}\n");
	return run.errors ? 1 : 0;
}

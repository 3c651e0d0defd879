// SPDX-License-Identifier: GPL-2.0-only
/*
 * lab-peek - try to read and write kernel addresses from user mode.
 *
 * Why: the UKVA window maps the current process's page tables into kernel
 * space. It must never be reachable from user mode (no _PAGE_USER; with PTI
 * not even present in the user page tables). This probes it the three ways
 * a process could: a load, a store, and handing the address to the kernel
 * as a user buffer (write(2) from it into a pipe, which must fail with
 * EFAULT).
 *
 * Usage: lab-peek ADDR...   (hex with 0x, or decimal)
 *
 * Before the given addresses it probes a variable of its own (the
 * "control"): that one must be readable and writable, so a harness that
 * reports everything as refused cannot pass unnoticed.
 *
 * Output: one JSON line, e.g.
 *   {"control":{"addr":"0x80e8f64","read":"ok","write":"ok","syscall":"ok"},
 *    "probes":[{"addr":"0xff000000","read":"SIGSEGV","write":"SIGSEGV",
 *    "syscall":"EFAULT"}],"refused":3,"attempts":3}
 * (on one line). Exit 0 when the output was produced, 2 on bad arguments.
 * Built static for i386: gcc -m32 -static -O2 -Wall lab-peek.c
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sigjmp_buf env;
static volatile sig_atomic_t last_sig;
static volatile unsigned long control_word = 0x5a5a5a5a;

static void on_fault(int sig)
{
	last_sig = sig;
	siglongjmp(env, 1);
}

static const char *sig_name(int sig)
{
	return sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : "signal";
}

/* One access; returns "ok" or the signal it raised. */
static const char *try_access(volatile unsigned long *p, int store)
{
	last_sig = 0;
	if (sigsetjmp(env, 1))
		return sig_name(last_sig);
	if (store)
		*p = *p;	/* write back what is there: harmless if it works */
	else
		(void)*p;
	return "ok";
}

/*
 * write(2) from the address into a pipe: the kernel's copy_from_user must
 * refuse it. (Not /dev/null: its write never reads the buffer.)
 */
static const char *try_syscall(const int fds[2], const void *p)
{
	ssize_t n = write(fds[1], p, sizeof(unsigned long));
	unsigned long drain;

	if (n == (ssize_t)sizeof(unsigned long)) {
		if (read(fds[0], &drain, sizeof(drain)) != sizeof(drain))
			return "pipe";
		return "ok";
	}
	return n < 0 && errno == EFAULT ? "EFAULT" : n < 0 ? strerror(errno) : "short";
}

static int probe(const int fds[2], unsigned long addr, int first)
{
	volatile unsigned long *p = (volatile unsigned long *)addr;
	const char *r = try_access(p, 0), *w = try_access(p, 1);
	const char *s = try_syscall(fds, (const void *)addr);

	printf("%s{\"addr\":\"0x%lx\",\"read\":\"%s\",\"write\":\"%s\",\"syscall\":\"%s\"}",
	       first ? "" : ",", addr, r, w, s);
	return (strcmp(r, "ok") != 0) + (strcmp(w, "ok") != 0) +
	       (strcmp(s, "ok") != 0);
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_fault };
	int fds[2], i, refused = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: lab-peek ADDR...\n");
		return 2;
	}
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGBUS, &sa, NULL)) {
		perror("lab-peek: sigaction");
		return 1;
	}
	if (pipe(fds)) {
		perror("lab-peek: pipe");
		return 1;
	}
	for (i = 1; i < argc; i++) {
		char *end;

		errno = 0;
		strtoul(argv[i], &end, 0);
		if (errno || end == argv[i] || *end) {
			fprintf(stderr, "lab-peek: not an address: %s\n", argv[i]);
			return 2;
		}
	}
	printf("{\"control\":");
	probe(fds, (unsigned long)&control_word, 1);
	printf(",\"probes\":[");
	for (i = 1; i < argc; i++)
		refused += probe(fds, strtoul(argv[i], NULL, 0), i == 1);
	printf("],\"refused\":%d,\"attempts\":%d}\n", refused, 3 * (argc - 1));
	return 0;
}

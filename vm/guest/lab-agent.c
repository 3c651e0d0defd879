// SPDX-License-Identifier: GPL-2.0
/*
 * lab-agent: the guest side of ukva-lab's control channel.
 *
 * Runs as PID 1 of the busybox initramfs (exec'd by /init) and serves a line protocol on a
 * serial port (ttyS1; ttyS0 stays the kernel console):
 *
 *   request:  "<id> <op> <base64 payload>\n"       op: ping | run | poweroff
 *   reply:    one JSON object on one line
 *
 * A "run" payload decodes to NUL-terminated fields:
 *   timeout_seconds, n_snapshots, snapshot_path * n, argv[0], argv[1], ...
 * The agent reads every snapshot file immediately before fork() and immediately after the
 * job is reaped, in-process, so that reading the counters adds no fork or exec of its own
 * to what the counters count. Reply strings are bytes: each byte >= 0x80 or < 0x20 is sent
 * as \u00XX, so the host decodes with latin-1 and gets the exact bytes back.
 *
 * A snapshot path "bpf:PIN" reads the BPF map pinned at PIN (the ebpf backend's counters),
 * also in-process: see lab-agent-bpf.c.
 *
 * Build: gcc -m32 -static -O2 -Wall -o lab-agent lab-agent.c lab-agent-bpf.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/random.h>

#include "lab-agent-bpf.h"

#define MAX_LINE (4 << 20)
#define MAX_CAPTURE (32 << 20)
#define MAX_SNAPSHOT (4 << 20)
#define MAX_FIELDS 4096

static int chan = -1;

/*
 * Window markers for the cost-model TCG plugin (lab/costmodel/plugin/costmodel.c): a no-op
 * `nopl MAGIC(%eax)` that the plugin recognises by its bytes (0F 1F 80 + imm32). Executed
 * just after the "before" snapshot and just before the "after" one, so the plugin's window
 * covers what the counter snapshots cover. Without the plugin they are plain NOPs.
 */
static inline void costmodel_mark_start(void)
{
	__asm__ __volatile__(".byte 0x0f, 0x1f, 0x80, 0x01, 0xb0, 0x61, 0x6c" ::: "memory");
}

static inline void costmodel_mark_end(void)
{
	__asm__ __volatile__(".byte 0x0f, 0x1f, 0x80, 0xff, 0xb0, 0x61, 0x6c" ::: "memory");
}

/*
 * Make the guest kernel's CRNG ready before anything is measured. Until it is, every
 * get_random_*() call (exec's stack and mmap randomisation, fork's stack canary) takes the
 * slow pre-init path, and when the kernel gets there by itself depends on how many
 * interrupts it has seen: under icount that varies from boot to boot, and execstorm's guest
 * time was bimodal with it (~555 us per exec after "random: crng init done", ~651 us
 * before). Crediting 256 bits here (RNDADDENTROPY, PID 1 is root) makes every boot measure
 * with a ready CRNG. The seed is fixed and public: nothing in a lab guest may rely on its
 * randomness being secret.
 */
static void seed_crng(void)
{
	static const char seed[] = "ukva-lab: a fixed, public CRNG seed for measuring guests";
	struct {
		int entropy_count;
		int buf_size;
		unsigned char buf[32];
	} pool = { .entropy_count = 256, .buf_size = 32 };
	int fd;

	memcpy(pool.buf, seed, sizeof(pool.buf));
	fd = open("/dev/urandom", O_WRONLY);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool) < 0)
		fprintf(stderr, "lab-agent: cannot seed the crng: %s\n", strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Is the CRNG ready (getrandom() would not block)? */
static int crng_ready(void)
{
	unsigned char c;

	return getrandom(&c, 1, GRND_NONBLOCK) == 1;
}

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			_exit(111);
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		buf_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Append a JSON string literal holding the bytes [s, s+n). */
static void buf_json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	buf_put(b, "\"", 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };

			buf_put(b, e, 2);
		} else if (c == '\n') {
			buf_put(b, "\\n", 2);
		} else if (c < 0x20 || c >= 0x7f) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

			buf_put(b, e, 6);
		} else {
			buf_put(b, &s[i], 1);
		}
	}
	buf_put(b, "\"", 1);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void send_reply(struct buf *b)
{
	buf_put(b, "\n", 1);
	write_all(chan, b->p, b->len);
	tcdrain(chan);
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode base64 in place; returns the decoded length or -1 on a bad character. */
static ssize_t b64decode(char *s)
{
	size_t out = 0;
	unsigned int acc = 0;
	int bits = 0;
	char *p;

	for (p = s; *p && *p != '='; p++) {
		int v = b64val((unsigned char)*p);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			s[out++] = (char)((acc >> bits) & 0xff);
		}
	}
	return (ssize_t)out;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Read a whole (proc/tracefs) file; NULL with errno set when it cannot be opened. */
static char *slurp(const char *path, size_t *len)
{
	struct buf b = { 0 };
	char tmp[8192];
	int fd;

	if (!strncmp(path, "bpf:", 4))
		return slurp_bpf_map(path + 4, len);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	for (;;) {
		ssize_t r = read(fd, tmp, sizeof(tmp));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || b.len + (size_t)r > MAX_SNAPSHOT)
			break;
		buf_put(&b, tmp, (size_t)r);
	}
	close(fd);
	if (!b.p)
		buf_put(&b, "", 0);
	*len = b.len;
	return b.p;
}

/*
 * Read every snapshot file into a JSON object. The "before" snapshot reads them last to first
 * and the "after" one first to last, so the first file (kprobe_profile) is read nearest to
 * the cost-model window markers on both sides.
 */
static void snapshot(struct buf *out, char **paths, int n, int reverse)
{
	int k;

	buf_put(out, "{", 1);
	for (k = 0; k < n; k++) {
		int i = reverse ? n - 1 - k : k;
		size_t len = 0;
		char *data = slurp(paths[i], &len);

		if (k)
			buf_put(out, ",", 1);
		buf_json_str(out, paths[i], strlen(paths[i]));
		buf_put(out, ":", 1);
		if (data)
			buf_json_str(out, data, len);
		else
			buf_put(out, "null", 4);
		free(data);
	}
	buf_put(out, "}", 1);
}

static void reap_orphans(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static void drain(int *fd, struct buf *b, int *truncated)
{
	char tmp[16384];
	ssize_t r = read(*fd, tmp, sizeof(tmp));

	if (r > 0) {
		if (b->len + (size_t)r <= MAX_CAPTURE)
			buf_put(b, tmp, (size_t)r);
		else
			*truncated = 1;
	} else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
		close(*fd);
		*fd = -1;
	}
}

static void do_run(const char *id, char *payload, ssize_t plen)
{
	char *fields[MAX_FIELDS];
	int nf = 0, nsnap, i, outfd[2], errfd[2], status = 0, truncated = 0, exited = 0;
	struct buf reply = { 0 }, out = { 0 }, err = { 0 }, before = { 0 }, after = { 0 };
	double timeout;
	uint64_t t0, t1, deadline;
	pid_t pid;
	char *p = payload;

	while (p < payload + plen && nf < MAX_FIELDS) {
		fields[nf++] = p;
		p += strlen(p) + 1;
	}
	if (nf < 3 || (nsnap = atoi(fields[1])) < 0 || nf < 3 + nsnap) {
		buf_printf(&reply, "{\"id\":%s,\"error\":\"malformed run request\"}", id);
		send_reply(&reply);
		free(reply.p);
		return;
	}
	timeout = atof(fields[0]);
	fields[nf] = NULL;

	if (pipe2(outfd, O_CLOEXEC) || pipe2(errfd, O_CLOEXEC)) {
		buf_printf(&reply, "{\"id\":%s,\"error\":\"pipe: %s\"}", id, strerror(errno));
		send_reply(&reply);
		free(reply.p);
		return;
	}
	snapshot(&before, &fields[2], nsnap, 1);
	costmodel_mark_start();
	t0 = now_ns();
	pid = fork();
	if (pid == 0) {
		setsid();
		dup2(outfd[1], 1);
		dup2(errfd[1], 2);
		signal(SIGPIPE, SIG_DFL);
		execvp(fields[2 + nsnap], &fields[2 + nsnap]);
		dprintf(2, "lab-agent: cannot execute %s: %s\n", fields[2 + nsnap], strerror(errno));
		_exit(127);
	}
	close(outfd[1]);
	close(errfd[1]);
	deadline = timeout > 0 ? t0 + (uint64_t)(timeout * 1e9) : 0;
	while (pid > 0) {
		struct pollfd pf[2] = { { outfd[0], POLLIN, 0 }, { errfd[0], POLLIN, 0 } };
		pid_t w;

		if (poll(pf, 2, 50) > 0) {
			if (pf[0].revents)
				drain(&outfd[0], &out, &truncated);
			if (pf[1].revents)
				drain(&errfd[0], &err, &truncated);
			pf[0].fd = outfd[0];
			pf[1].fd = errfd[0];
		}
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid) {
			t1 = now_ns();
			exited = 1;
			break;
		}
		if (deadline && now_ns() > deadline) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			t1 = now_ns();
			exited = 2;
			break;
		}
	}
	if (pid < 0) {
		t1 = now_ns();
		status = 127 << 8;
	}
	costmodel_mark_end();
	snapshot(&after, &fields[2], nsnap, 0);
	/* Take what is left in the pipes without waiting for background grandchildren. */
	for (i = 0; i < 64 && (outfd[0] >= 0 || errfd[0] >= 0); i++) {
		struct pollfd pf[2] = { { outfd[0], POLLIN, 0 }, { errfd[0], POLLIN, 0 } };

		if (poll(pf, 2, 0) <= 0)
			break;
		if (pf[0].revents)
			drain(&outfd[0], &out, &truncated);
		if (pf[1].revents)
			drain(&errfd[0], &err, &truncated);
	}
	if (outfd[0] >= 0)
		close(outfd[0]);
	if (errfd[0] >= 0)
		close(errfd[0]);
	reap_orphans();

	buf_printf(&reply, "{\"id\":%s,\"rc\":%d,\"signal\":%d,\"timed_out\":%s,"
		   "\"truncated\":%s,\"wall_ns\":%llu,\"stdout\":",
		   id, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		   WIFSIGNALED(status) ? WTERMSIG(status) : 0,
		   exited == 2 ? "true" : "false", truncated ? "true" : "false",
		   (unsigned long long)(t1 - t0));
	buf_json_str(&reply, out.p ? out.p : "", out.len);
	buf_put(&reply, ",\"stderr\":", 10);
	buf_json_str(&reply, err.p ? err.p : "", err.len);
	buf_put(&reply, ",\"before\":", 10);
	buf_put(&reply, before.p, before.len);
	buf_put(&reply, ",\"after\":", 9);
	buf_put(&reply, after.p, after.len);
	buf_put(&reply, "}", 1);
	send_reply(&reply);
	free(reply.p);
	free(out.p);
	free(err.p);
	free(before.p);
	free(after.p);
}

static void handle_line(char *line)
{
	char *id = line, *op, *payload;
	struct buf reply = { 0 };
	ssize_t plen;

	op = strchr(id, ' ');
	if (!op)
		return;
	*op++ = 0;
	payload = strchr(op, ' ');
	if (payload)
		*payload++ = 0;
	else
		payload = op + strlen(op);
	if (strspn(id, "0123456789") != strlen(id) || !*id)
		return;

	if (!strcmp(op, "ping")) {
		struct utsname u;

		uname(&u);
		buf_printf(&reply, "{\"id\":%s,\"pong\":true,\"pid\":%d,\"release\":", id, getpid());
		buf_json_str(&reply, u.release, strlen(u.release));
		buf_put(&reply, ",\"machine\":", 11);
		buf_json_str(&reply, u.machine, strlen(u.machine));
		buf_printf(&reply, ",\"crng_ready\":%s}", crng_ready() ? "true" : "false");
		send_reply(&reply);
	} else if (!strcmp(op, "run")) {
		plen = b64decode(payload);
		if (plen < 0) {
			buf_printf(&reply, "{\"id\":%s,\"error\":\"bad base64\"}", id);
			send_reply(&reply);
		} else {
			do_run(id, payload, plen);
		}
	} else if (!strcmp(op, "poweroff")) {
		buf_printf(&reply, "{\"id\":%s,\"ok\":true}", id);
		send_reply(&reply);
		sync();
		reboot(RB_POWER_OFF);
	} else {
		buf_printf(&reply, "{\"id\":%s,\"error\":\"unknown op\"}", id);
		send_reply(&reply);
	}
	free(reply.p);
}

int main(int argc, char **argv)
{
	const char *dev = argc > 1 ? argv[1] : "/dev/ttyS1";
	static char line[MAX_LINE];
	size_t len = 0;
	struct termios t;

	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	setenv("PATH", "/workloads:/bin:/sbin:/usr/bin:/usr/sbin", 1);
	seed_crng();
	chan = open(dev, O_RDWR | O_NOCTTY);
	if (chan < 0) {
		fprintf(stderr, "lab-agent: cannot open %s: %s\n", dev, strerror(errno));
		for (;;)
			pause();
	}
	if (tcgetattr(chan, &t) == 0) {
		cfmakeraw(&t);
		cfsetspeed(&t, B115200);
		tcsetattr(chan, TCSANOW, &t);
	}
	fprintf(stderr, "lab-agent: serving on %s\n", dev);
	for (;;) {
		ssize_t r = read(chan, line + len, sizeof(line) - 1 - len);
		char *nl;

		if (r <= 0) {
			if (r < 0 && errno != EINTR && errno != EAGAIN)
				sleep(1);
			continue;
		}
		len += (size_t)r;
		while ((nl = memchr(line, '\n', len))) {
			size_t used = (size_t)(nl - line) + 1;

			*nl = 0;
			if (nl > line && nl[-1] == '\r')
				nl[-1] = 0;
			handle_line(line);
			memmove(line, line + used, len - used);
			len -= used;
		}
		if (len == sizeof(line) - 1)
			len = 0; /* an over-long line is dropped */
		reap_orphans();
	}
}

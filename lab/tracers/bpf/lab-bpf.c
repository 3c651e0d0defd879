// SPDX-License-Identifier: GPL-2.0
/*
 * lab-bpf: the eBPF backend's loader in the i386 guest (static, libbpf).
 *
 *   lab-bpf OBJ PINDIR SPEC...
 *
 *   c:SLOT:TARGET           kprobe counted in slot SLOT (TARGET: a symbol or 0xADDRESS)
 *   t:SLOT:SUB:EVENT        tracepoint counted in SLOT
 *   f:SLOT:OFF:SUB:EVENT    tracepoint counted in SLOT and per int field at OFF in SLOT+1+v
 *   s:TARGET                kernel stacks reaching TARGET counted (stackcount)
 *   l:TARGET                TARGET's duration as a log2 histogram (kprobe + kretprobe)
 *
 * Loads OBJ once, attaches each SPEC with its slot as the BPF cookie, pins the maps and every
 * link under PINDIR and exits: the probes live on in the kernel until PINDIR is removed, and
 * the agent reads the pinned maps in-process around a workload, as it reads tracefs files.
 * Prints "ok SPEC" or "failed SPEC REASON" per spec and "jit PROG 0|1" per program; a load
 * failure is one line, "error: PROG: REASON" with the verifier's reason, and exit 1.
 *
 * Build: gcc -m32 -static -O2 -o lab-bpf lab-bpf.c -lbpf -lelf -lz -lzstd
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static char logbuf[1 << 16];
static size_t loglen;

/* Keep libbpf's messages (the verifier log among them) to name the reason of a failure. */
static int keep_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	int n;

	if (level == LIBBPF_DEBUG || loglen >= sizeof(logbuf) - 1)
		return 0;
	n = vsnprintf(logbuf + loglen, sizeof(logbuf) - loglen, fmt, ap);
	if (n > 0)
		loglen += (size_t)n < sizeof(logbuf) - loglen ? (size_t)n : sizeof(logbuf) - 1 - loglen;
	return 0;
}

/*
 * The verifier's reason: the last line of the program load log that is not its summary
 * ("processed N insns ...") nor a libbpf frame; else libbpf's last line.
 */
static void failure_reason(char *out, size_t size)
{
	char *line, *save = NULL, *best = NULL, *last = NULL;
	int in_log = 0;

	for (line = strtok_r(logbuf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, "-- BEGIN PROG LOAD LOG --")) {
			in_log = 1;
			continue;
		}
		if (strstr(line, "-- END PROG LOAD LOG --")) {
			in_log = 0;
			continue;
		}
		if (in_log && *line && strncmp(line, "processed ", 10) && strncmp(line, "verification time", 17))
			best = line;
		if (!in_log && *line)
			last = line;
	}
	snprintf(out, size, "%s", best ? best : last ? last : "unknown reason");
}

static struct bpf_object *obj;
static const char *pindir;
static int nlinks;

static struct bpf_program *prog(const char *name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(obj, name);

	if (!p) {
		printf("error: %s: no such program in the object\n", name);
		exit(1);
	}
	return p;
}

/* Pin the link so it outlives this process; the link is then the pin's to hold. */
static int keep(struct bpf_link *link, const char *spec)
{
	char path[256];
	int err;

	if (!link) {
		printf("failed %s %s\n", spec, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/link%d", pindir, nlinks++);
	err = bpf_link__pin(link, path);
	if (err) {
		printf("failed %s pin: %s\n", spec, strerror(-err));
		bpf_link__destroy(link);
		return -1;
	}
	bpf_link__disconnect(link);
	bpf_link__destroy(link);
	return 0;
}

static struct bpf_link *kprobe(const char *progname, const char *target, __u64 cookie, int ret)
{
	LIBBPF_OPTS(bpf_kprobe_opts, o, .bpf_cookie = cookie, .retprobe = ret);

	if (!strncmp(target, "0x", 2)) {
		o.offset = (size_t)strtoul(target, NULL, 16);
		return bpf_program__attach_kprobe_opts(prog(progname), NULL, &o);
	}
	return bpf_program__attach_kprobe_opts(prog(progname), target, &o);
}

static void attach(char *spec)
{
	char copy[256], *f[6] = { 0 }, *save = NULL;
	int n = 0;

	snprintf(copy, sizeof(copy), "%s", spec);
	for (char *t = strtok_r(copy, ":", &save); t && n < 6; t = strtok_r(NULL, ":", &save))
		f[n++] = t;
	if (n == 3 && !strcmp(f[0], "c")) {
		if (!keep(kprobe("kp_count", f[2], strtoull(f[1], NULL, 10), 0), spec))
			printf("ok %s\n", spec);
	} else if (n == 4 && !strcmp(f[0], "t")) {
		LIBBPF_OPTS(bpf_tracepoint_opts, o, .bpf_cookie = strtoull(f[1], NULL, 10));

		if (!keep(bpf_program__attach_tracepoint_opts(prog("tp_count"), f[2], f[3], &o), spec))
			printf("ok %s\n", spec);
	} else if (n == 5 && !strcmp(f[0], "f")) {
		__u64 c = strtoull(f[1], NULL, 10) | (strtoull(f[2], NULL, 10) << 16);
		LIBBPF_OPTS(bpf_tracepoint_opts, o, .bpf_cookie = c);

		if (!keep(bpf_program__attach_tracepoint_opts(prog("tp_field"), f[3], f[4], &o), spec))
			printf("ok %s\n", spec);
	} else if (n == 2 && !strcmp(f[0], "s")) {
		if (!keep(kprobe("kp_stack", f[1], 0, 0), spec))
			printf("ok %s\n", spec);
	} else if (n == 2 && !strcmp(f[0], "l")) {
		if (!keep(kprobe("kp_lat_entry", f[1], 0, 0), spec) &&
		    !keep(kprobe("kp_lat_return", f[1], 0, 1), spec))
			printf("ok %s\n", spec);
	} else {
		printf("failed %s bad spec\n", spec);
	}
}

int main(int argc, char **argv)
{
	struct bpf_program *p;
	struct bpf_map *m;
	char reason[512], path[256];
	int i, err;

	if (argc < 3) {
		fprintf(stderr, "usage: lab-bpf OBJ PINDIR SPEC...\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	pindir = argv[2];
	libbpf_set_print(keep_log);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		failure_reason(reason, sizeof(reason));
		printf("error: cannot open %s: %s\n", argv[1], reason);
		return 1;
	}
	err = bpf_object__load(obj);
	if (err) {
		const char *name = "?";

		bpf_object__for_each_program(p, obj)
			if (bpf_program__fd(p) < 0)
				name = bpf_program__name(p);
		failure_reason(reason, sizeof(reason));
		printf("error: %s: %s\n", name, reason);
		return 1;
	}
	if (mkdir(pindir, 0700) && errno != EEXIST) {
		printf("error: mkdir %s: %s\n", pindir, strerror(errno));
		return 1;
	}
	bpf_object__for_each_map(m, obj) {
		if (!strcmp(bpf_map__name(m), ".bss") || strchr(bpf_map__name(m), '.'))
			continue;
		snprintf(path, sizeof(path), "%s/%s", pindir, bpf_map__name(m));
		err = bpf_map__pin(m, path);
		if (err) {
			printf("error: pin %s: %s\n", path, strerror(-err));
			return 1;
		}
	}
	bpf_object__for_each_program(p, obj) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len))
			printf("jit %s %d\n", bpf_program__name(p), info.jited_prog_len > 0);
	}
	for (i = 3; i < argc; i++)
		attach(argv[i]);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * lab-agent-bpf.c: the agent's "bpf:PIN" snapshots (see lab-agent.c): the BPF map pinned at
 * PIN read with the bpf() syscall, in-process, so reading the ebpf backend's counters adds
 * no fork to what they count. One "KEY VALUE" line per entry, KEY in hex bytes; VALUE in
 * decimal for 8-byte values (summed over CPUs for per-CPU maps), else in hex bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

#include "lab-agent-bpf.h"

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

/* The number of possible CPUs: a per-CPU map's value holds one slot for each. */
static int possible_cpus(void)
{
	int lo = 0, hi = 0, fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
	char s[64] = "";

	if (fd >= 0) {
		if (read(fd, s, sizeof(s) - 1) < 0)
			s[0] = 0;
		close(fd);
	}
	if (sscanf(s, "%d-%d", &lo, &hi) < 2)
		hi = lo;
	return hi + 1;
}

static void put_hex(FILE *f, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

/* Every entry of the map pinned at pin, as text; NULL with errno set on failure. */
char *slurp_bpf_map(const char *pin, size_t *len)
{
	struct bpf_map_info info;
	union bpf_attr a;
	char *text = NULL;
	FILE *f;
	unsigned char key[64], next[64], *val;
	size_t vlen;
	int fd, ncpu, percpu, first = 1, i;

	memset(&a, 0, sizeof(a));
	a.pathname = (uintptr_t)pin;
	fd = (int)sys_bpf(BPF_OBJ_GET, &a);
	if (fd < 0)
		return NULL;
	memset(&info, 0, sizeof(info));
	memset(&a, 0, sizeof(a));
	a.info.bpf_fd = (__u32)fd;
	a.info.info_len = sizeof(info);
	a.info.info = (uintptr_t)&info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) || info.key_size > sizeof(key)) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	percpu = info.type == BPF_MAP_TYPE_PERCPU_ARRAY || info.type == BPF_MAP_TYPE_PERCPU_HASH;
	ncpu = percpu ? possible_cpus() : 1;
	vlen = percpu ? ((info.value_size + 7) & ~7u) * (size_t)ncpu : info.value_size;
	val = calloc(1, vlen);
	if (!val)
		_exit(111);
	f = open_memstream(&text, len);
	if (!f)
		_exit(111);
	for (;;) {
		memset(&a, 0, sizeof(a));
		a.map_fd = (__u32)fd;
		a.key = first ? 0 : (uintptr_t)key;
		a.next_key = (uintptr_t)next;
		if (sys_bpf(BPF_MAP_GET_NEXT_KEY, &a))
			break;
		first = 0;
		memcpy(key, next, info.key_size);
		memset(&a, 0, sizeof(a));
		a.map_fd = (__u32)fd;
		a.key = (uintptr_t)key;
		a.value = (uintptr_t)val;
		if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &a))
			continue;	/* deleted since the key was listed */
		put_hex(f, key, info.key_size);
		fputc(' ', f);
		if (info.value_size == 8) {
			unsigned long long sum = 0, v;

			for (i = 0; i < ncpu; i++) {
				memcpy(&v, val + 8 * i, 8);
				sum += v;
			}
			fprintf(f, "%llu", sum);
		} else {
			put_hex(f, val, info.value_size);
		}
		fputc('\n', f);
	}
	free(val);
	close(fd);
	fclose(f);
	return text;
}

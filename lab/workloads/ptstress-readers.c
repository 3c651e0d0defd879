// SPDX-License-Identifier: GPL-2.0-only
/*
 * ptstress-readers.c - the readers: foreign page-table walks of the workers
 * and their children through /proc/PID/pagemap.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "ptstress.h"

struct reader {
	unsigned long index;
	const pid_t *workers;
	unsigned long nworkers;
	struct result res;
	uint64_t ents[CHUNK];
	char maps[65536];
};

static void reader_error(struct reader *r, const char *what, const char *path)
{
	r->res.errors++;
	if (may_print())
		fprintf(stderr, "ptstress: reader %lu: %s %s: %s\n", r->index,
			what, path, strerror(errno));
}

/*
 * State, parent and flags of a process from /proc/PID/stat; -1 if it is
 * gone.
 */
static int proc_stat(long pid, char *state, int *ppid, unsigned int *flags)
{
	char path[64], buf[512], *rp;
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return -1;
	buf[len] = '\0';
	rp = strrchr(buf, ')');	/* the comm may hold anything */
	if (!rp || sscanf(rp + 1, " %c %d %*d %*d %*d %*d %u", state, ppid,
			  flags) != 3)
		return -1;
	return 0;
}

/*
 * Errors that only mean the process or the mapping went away. A reader
 * without CAP_SYS_PTRACE (a user on the host) also gets EACCES for a process
 * that is exiting (its mm already gone) or a zombie.
 */
static int gone(pid_t pid, int err)
{
	unsigned int flags;
	char state;
	int ppid;

	if (err == ENOENT || err == ESRCH || err == EINVAL || err == EINTR)
		return 1;
	if (err != EACCES && err != EPERM)
		return 0;
	if (proc_stat(pid, &state, &ppid, &flags) || state == 'Z' ||
	    state == 'X' || (flags & PF_EXITING))
		return 1;
	errno = err;
	return 0;
}

static int is_worker(const struct reader *r, pid_t pid)
{
	unsigned long i;

	for (i = 0; i < r->nworkers; i++)
		if (r->workers[i] == pid && pid > 0)
			return 1;
	return 0;
}

/* The workers, then every process whose parent is a worker (best effort). */
static unsigned long targets(struct reader *r, pid_t *pids)
{
	unsigned long n = 0, i;
	struct dirent *d;
	unsigned int flags;
	char *end, state;
	DIR *dir;
	long pid;
	int ppid;

	for (i = 0; i < r->nworkers; i++)
		if (r->workers[i] > 0)
			pids[n++] = r->workers[i];
	dir = opendir("/proc");
	if (!dir)
		return n;
	while (n < MAX_TARGETS && (d = readdir(dir))) {
		pid = strtol(d->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;	/* not a process */
		if (!proc_stat(pid, &state, &ppid, &flags) &&
		    is_worker(r, ppid))
			pids[n++] = (pid_t)pid;
	}
	closedir(dir);
	return n;
}

static void count_entries(struct reader *r, size_t n)
{
	size_t i;

	r->res.pm_entries += n;
	for (i = 0; i < n; i++)
		r->res.pm_present += !!(r->ents[i] & PM_PRESENT);
}

/* Read the pagemap entries of every mapping of @pid. */
static void walk(struct reader *r, pid_t pid, int child)
{
	char path[64], *line, *end;
	unsigned long start, stop, addr, cnt;
	size_t used = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (!gone(pid, errno))
			reader_error(r, "open", path);
		return;
	}
	while (used < sizeof(r->maps) - 1 &&
	       (n = read(fd, r->maps + used, sizeof(r->maps) - 1 - used)) > 0)
		used += n;
	close(fd);
	r->maps[used] = '\0';

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (!gone(pid, errno))
			reader_error(r, "open", path);
		return;
	}
	r->res.pm_procs++;
	r->res.pm_children += child;
	for (line = r->maps; *line && !late(); line = end + 1) {
		start = strtoul(line, &end, 16);
		if (*end != '-')
			break;
		stop = strtoul(end + 1, &end, 16);
		for (addr = start; addr < stop; addr += cnt * page_size) {
			cnt = (stop - addr) / page_size;
			if (cnt > CHUNK)
				cnt = CHUNK;
			n = pread(fd, r->ents, cnt * sizeof(uint64_t),
				  (off_t)(addr / page_size * sizeof(uint64_t)));
			if (n < 0) {
				if (!gone(pid, errno))
					reader_error(r, "pread", path);
				goto out;
			}
			if (n == 0)	/* the mm is gone */
				goto out;
			count_entries(r, (size_t)n / sizeof(uint64_t));
			if ((size_t)n < cnt * sizeof(uint64_t))
				break;	/* short: next mapping */
		}
		end = strchr(end, '\n');
		if (!end)
			break;
	}
out:
	close(fd);
}

/* Our own pagemap: the even pages we wrote are present, the odd ones not. */
static void self_check(struct reader *r, const char *region, int nohuge_ok)
{
	unsigned long i;
	int present, want;
	ssize_t n;
	int fd;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		reader_error(r, "open", "/proc/self/pagemap");
		return;
	}
	n = pread(fd, r->ents, SELF_PAGES * sizeof(uint64_t),
		  (off_t)((uintptr_t)region / page_size * sizeof(uint64_t)));
	close(fd);
	if (n != (ssize_t)(SELF_PAGES * sizeof(uint64_t))) {
		if (n >= 0)
			errno = EIO;
		reader_error(r, "pread", "/proc/self/pagemap");
		return;
	}
	count_entries(r, SELF_PAGES);
	for (i = 0; i < SELF_PAGES; i++) {
		present = !!(r->ents[i] & PM_PRESENT);
		want = i % 2 == 0;
		if (present == want || (!want && !nohuge_ok))
			continue;
		r->res.errors++;
		if (may_print())
			fprintf(stderr, "ptstress: reader %lu: own page %lu: pagemap says %spresent\n",
				r->index, i, present ? "" : "not ");
	}
}

int reader_main(unsigned long index, unsigned long proc,
		       const pid_t *workers, unsigned long nworkers, int out)
{
	static struct reader rd;
	struct reader *r = &rd;
	pid_t pids[MAX_TARGETS];
	unsigned long n, i, scan;
	int nohuge_ok = 1;
	char *region;

	r->index = index;
	r->workers = workers;
	r->nworkers = nworkers;
	r->res.proc = (uint32_t)proc;
	region = mmap(NULL, SELF_PAGES * page_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		reader_error(r, "mmap", "own region");
	} else {
		if (madvise(region, SELF_PAGES * page_size, MADV_NOHUGEPAGE))
			nohuge_ok = errno == EINVAL;	/* EINVAL: no THP */
		for (i = 0; i < SELF_PAGES; i += 2)
			region[i * page_size] = 1;
	}
	for (scan = 0; !late(); scan++) {
		n = targets(r, pids);
		for (i = 0; i < n && !late(); i++)
			walk(r, pids[i], !is_worker(r, pids[i]));
		if (scan % 8 == 0 && region != MAP_FAILED)
			self_check(r, region, nohuge_ok);
		if (!n)
			usleep(1000);
	}
	if (write(out, &r->res, sizeof(r->res)) != sizeof(r->res))
		return CHILD_FAILED;
	return r->res.errors ? CHILD_FAILED : 0;
}

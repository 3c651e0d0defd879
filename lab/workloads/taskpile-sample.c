// SPDX-License-Identifier: GPL-2.0-only
/*
 * taskpile-sample.c - one memory sample: PageTables, LowFree and HighFree
 * from /proc/meminfo, and the free pages on the per-CPU lists of each zone
 * from /proc/zoneinfo (LowFree leaves them out, and they absorb tens of MiB).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "taskpile.h"

/* "Key:   123 kB" from a meminfo buffer, or -1 when the key is absent. */
static long meminfo_kb(const char *buf, const char *key)
{
	size_t len = strlen(key);
	const char *p = buf;

	while (p && *p) {
		if (!strncmp(p, key, len) && p[len] == ':')
			return strtol(p + len + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

/*
 * Pages on the per-CPU free lists, by zone, from /proc/zoneinfo: the "count:"
 * lines of each zone's pagesets. NR_FREE_PAGES (LowFree, HighFree) leaves
 * these out, and they can be large (in the 8 GiB guest a CPU keeps up to
 * ~21 MiB of lowmem and ~45 MiB of highmem there), so a page table freed to
 * or allocated from them does not move LowFree.
 */
static int read_pcp(struct sample *s, int have_lowfree)
{
	char line[256], zone[32] = "";
	FILE *f = fopen("/proc/zoneinfo", "r");
	long pages_low = 0, pages_high = 0, n;
	int high;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Node %*d, zone %31s", zone) == 1)
			continue;
		if (sscanf(line, " count: %ld", &n) != 1)
			continue;
		high = have_lowfree && (!strcmp(zone, "HighMem") ||
					!strcmp(zone, "Movable"));
		if (high)
			pages_high += n;
		else
			pages_low += n;
	}
	fclose(f);
	n = sysconf(_SC_PAGESIZE) / 1024;
	s->low_pcp_kb = pages_low * n;
	s->high_pcp_kb = pages_high * n;
	return 0;
}

/*
 * Fill a sample from /proc/meminfo and /proc/zoneinfo; returns -1 if they
 * cannot be read.
 */
int read_memory(struct sample *s, int *have_lowfree)
{
	char buf[8192];
	ssize_t n, len = 0;
	int fd = open("/proc/meminfo", O_RDONLY);

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += n;
	close(fd);
	buf[len] = '\0';
	s->page_tables_kb = meminfo_kb(buf, "PageTables");
	s->low_free_kb = meminfo_kb(buf, "LowFree");
	s->high_free_kb = meminfo_kb(buf, "HighFree");
	*have_lowfree = s->low_free_kb >= 0;
	if (!*have_lowfree) {		/* no CONFIG_HIGHMEM */
		s->low_free_kb = meminfo_kb(buf, "MemFree");
		s->high_free_kb = 0;
	}
	if (s->page_tables_kb < 0 || s->low_free_kb < 0)
		return -1;
	return read_pcp(s, *have_lowfree);
}

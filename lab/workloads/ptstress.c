// SPDX-License-Identifier: GPL-2.0-only
/*
 * ptstress - processes churn their page tables for a fixed time while others
 * walk them through /proc/PID/pagemap.
 *
 * Stresses: every path that allocates, moves, copies or frees page-table
 * pages, concurrently with foreign walkers of the same page tables. --workers
 * processes loop until the deadline, round robin over five kinds of round:
 *   fault    mmap --mib MiB (THP off), write and verify every page (PTE page
 *            allocation, do_anonymous_page), mprotect it read-only (PTEs
 *            changed in place, TLB flush), verify again, munmap (PTE pages
 *            freed).
 *   mremap   fill a region at a 2 MiB-aligned address and move it with
 *            MREMAP_MAYMOVE|MREMAP_FIXED to another 2 MiB-aligned address:
 *            whole PTE pages change hands (move_normal_pmd). The old range is
 *            mapped again and must read zero (new PTE pages in the old PMD
 *            slots), then written, and the moved copy checked again. Then a
 *            move to an address one page off alignment (move_ptes: the old
 *            and the new PTE page mapped at once) and a shrink and a grow in
 *            place.
 *   fork     fill a region and fork: the child checks the inherited pattern,
 *            writes its own to every page (COW faults) and checks it; the
 *            parent checks its pattern is untouched once the child is gone
 *            (copy_pte_range, COW, exit teardown).
 *   exec     fork and execve this program with --exec-child, which maps,
 *            writes and checks a small region (a new mm, its teardown).
 *   threads  2-4 threads of the worker's mm each mmap a region at a 2 MiB-
 *            aligned address, fill it, mremap it to another aligned address
 *            (whole page tables move: move_normal_pmd, for every whole 2 MiB
 *            of the thread's share of --mib), grow it (may move), check,
 *            mprotect and munmap it, a short burst at the same time: PTE
 *            pages allocated, moved whole and freed while the sibling
 *            threads fault and munmap on the other vCPU in the same mm.
 * Meanwhile --readers processes list the workers and their children (the
 * workers' pids, plus every /proc/PID whose parent is a worker) and pread the
 * pagemap entries of every mapping in /proc/PID/maps, in chunks: a foreign
 * page-table walk (pagemap_pmd_range maps the other mm's PTE pages) racing
 * with the allocation, moves and frees above. Processes and mappings that go
 * away in between are normal, not errors.
 *
 * Usage: ptstress [--seconds S] [--workers W] [--readers R] [--mib M] [--thp 0|1]
 *                 [--kinds MASK]
 *        ptstress --exec-child WORKER ITERATION
 *   --seconds S   wall time to run
 *   --workers W   worker processes churning
 *   --readers R   pagemap reader processes
 *   --thp 1       fault rounds also collapse their region into huge pages
 *                 (MADV_HUGEPAGE + MADV_COLLAPSE, khugepaged's path) and
 *                 split one by a partial mprotect, checking the data after
 *                 each; needs CONFIG_TRANSPARENT_HUGEPAGE
 *   --mib M       MiB per region; a worker holds up to about 2 * M MiB at
 *                 once, its fork child M more
 *   --kinds MASK  which kinds of round run: 1 fault, 2 mremap, 4 fork,
 *                 8 exec, 16 threads (default 31, all); kinds left out
 *                 report 0 rounds
 *   --exec-child  the exec target of the exec rounds (not for direct use)
 * (defaults and bounds: ptstress.toml)
 * Workers stop within about a second of the deadline (a round cut short by
 * it is not counted); the report follows once every process has exited.
 *
 * Self-check: every page written holds a pattern derived from (worker,
 * iteration, thread, step, page) in its first word and zero in its last;
 * each is checked after every move, protection change, fork and remap, and
 * ranges that must be fresh must read zero. Every mismatched page is an error
 * (reported on stderr with worker, kind, iteration and page), as are failed
 * mmap/mremap/mprotect/munmap calls, failed forks (EAGAIN and ENOMEM are
 * retried for a second), failed thread creation, an exec child that fails,
 * a fork or exec child killed by a signal, and a worker or reader that dies
 * or sends no counts. Readers also check /proc/self/pagemap of a small
 * region of their own: the pages they wrote must be present, the others not.
 *
 * Output: one JSON line on stdout, e.g. (--seconds 5, on the host)
 *   {"workload":"ptstress","unit":"round","ops":197,"errors":0,
 *    "elapsed_ns":5008531558,"params":{"seconds":5,"workers":4,
 *    "readers":2,"mib":8,"thp":0},"rounds":{"fault":39,"mremap":39,"fork":40,
 *    "exec":41,"threads":38},"pages_verified":3545164,
 *    "pagemap_entries":8292884,"pagemap_present":5623418,
 *    "pagemap_procs":2492,"pagemap_children":193,"collapses":0,
 *    "nohugepage":true}
 * (on one line); ops is the sum of the rounds of all kinds. pagemap_procs
 * counts pagemaps the readers opened, pagemap_children those of workers'
 * children among them. "nohugepage" is false when the kernel has no THP
 * (MADV_NOHUGEPAGE gives EINVAL: nothing to turn off). Exit 0 if errors == 0,
 * 1 otherwise, 2 on bad arguments.
 * Built static for i386 by lab/guest/image.py from the files ptstress.toml
 * lists (see ptstress.h); glibc 2.34 and later has pthreads in libc: no
 * -pthread needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "ptstress.h"

const char *const kind_name[NKINDS] = {
	"fault", "mremap", "fork", "exec", "threads",
};

static struct param params[] = PARAM_TABLE;

long long deadline;
size_t page_size, wpp;
size_t region_len;
unsigned long region_pages;
char self_path[PATH_MAX];
int use_thp;
unsigned long kind_mask;
int result_fd = -1;
int nohuge_taken;
uint64_t collapses;
struct child_counts *child_counts;

void print_usage(FILE *f)
{
	fprintf(f, "usage: ptstress [--seconds S] [--workers W] [--readers R] [--mib M] [--thp 0|1]\n"
		   "                [--kinds MASK]\n"
		   "       ptstress --exec-child WORKER ITERATION\n");
}

/* --- the parent --------------------------------------------------------- */

struct totals {
	unsigned long workers;	/* crew members 0..workers-1 are workers */
	const pid_t *pids;	/* the crew's: readers inherit the workers' */
	unsigned long errors;
	unsigned long long ops, verified, entries, present;
	unsigned long long pm_procs, pm_children, ncollapses;
	unsigned long long by_kind[NKINDS];
	int nohuge_any;
};

/* Workers first: the readers, forked after them, inherit their pids. */
static int crew_member(unsigned long i, int out, void *arg)
{
	const struct totals *tot = arg;

	if (i < tot->workers)
		return worker_main(i, out);
	return reader_main(i - tot->workers, i, tot->pids, tot->workers, out);
}

static void add_result(const void *rec, void *arg)
{
	const struct result *res = rec;
	struct totals *tot = arg;
	unsigned long k;

	for (k = 0; k < NKINDS; k++) {
		tot->by_kind[k] += res->rounds[k];
		tot->ops += res->rounds[k];
	}
	tot->errors += res->errors;
	tot->verified += res->verified;
	tot->entries += res->pm_entries;
	tot->present += res->pm_present;
	tot->pm_procs += res->pm_procs;
	tot->pm_children += res->pm_children;
	tot->ncollapses += res->collapses;
	tot->nohuge_any |= res->nohuge;
}

int main(int argc, char **argv)
{
	unsigned char seen[MAX_WORKERS + MAX_READERS] = { 0 };
	pid_t pids[MAX_WORKERS + MAX_READERS] = { 0 };
	struct crew crew = { "ptstress", 0, pids, seen, { -1, -1 } };
	unsigned long seconds, workers, readers, mib, k;
	struct totals tot = { .pids = pids };
	struct result res;
	long long t0, t1;

	if (argc >= 2 && !strcmp(argv[1], "--exec-child"))
		return exec_child(argc, argv);
	parse_params("ptstress", params, ARRAY_SIZE(params), argc, argv,
		     print_usage, NULL);
	seconds = params[PARAM_SECONDS].value;
	workers = params[PARAM_WORKERS].value;
	readers = params[PARAM_READERS].value;
	mib = params[PARAM_MIB].value;
	use_thp = (int)params[PARAM_THP].value;
	kind_mask = params[PARAM_KINDS].value;
	tot.workers = workers;
	crew.n = workers + readers;
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	wpp = page_size / sizeof(uint32_t);
	region_len = mib * MIB;
	region_pages = region_len / page_size;
	if (find_self(argv[0], self_path, sizeof(self_path))) {
		fprintf(stderr, "ptstress: cannot find my own path (no /proc/self/exe, argv[0] '%s')\n",
			argv[0]);
		return 1;
	}
	if (pipe2(crew.fds, O_CLOEXEC)) {	/* exec children must not hold it */
		fprintf(stderr, "ptstress: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);	/* children must not inherit buffered output */

	t0 = now_ns();
	deadline = t0 + (long long)seconds * 1000000000LL;
	tot.errors += crew_fork(&crew, crew_member, &tot);
	tot.errors += crew_collect(&crew, &res, sizeof(res), add_result, &tot,
				   CHILD_FAILED, deadline, GRACE_NS);
	t1 = now_ns();

	printf("{\"workload\":\"ptstress\",\"unit\":\"round\",");
	printf("\"ops\":%llu,\"errors\":%lu,\"elapsed_ns\":%lld,",
	       tot.ops, tot.errors, t1 - t0);
	printf("\"params\":{\"seconds\":%lu,\"workers\":%lu,\"readers\":%lu,\"mib\":%lu,\"thp\":%d,\"kinds\":%lu},",
	       seconds, workers, readers, mib, use_thp, kind_mask);
	printf("\"rounds\":{");
	for (k = 0; k < NKINDS; k++)
		printf("%s\"%s\":%llu", k ? "," : "", kind_name[k],
		       tot.by_kind[k]);
	printf("},\"pages_verified\":%llu,\"pagemap_entries\":%llu,",
	       tot.verified, tot.entries);
	printf("\"pagemap_present\":%llu,\"pagemap_procs\":%llu,",
	       tot.present, tot.pm_procs);
	printf("\"pagemap_children\":%llu,\"collapses\":%llu,\"nohugepage\":%s}\n",
	       tot.pm_children, tot.ncollapses,
	       tot.nohuge_any ? "true" : "false");
	return tot.errors ? 1 : 0;
}

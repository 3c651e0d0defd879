// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * costmodel.c - a QEMU TCG plugin (API version 1, QEMU 7.2) that counts, for each window the
 * guest agent marks, what a hardware cost model needs: instructions (user/kernel by the
 * instruction's virtual address), rep-string iterations and bytes, loads and stores, INVLPG,
 * CR3 and CR4 writes, and misses of modelled set-associative ITLB/DTLBs with an optional
 * second-level TLB: one TLB geometry per machine model, all simulated side by side on the same
 * accesses. See docs/cost-model.md for every approximation.
 *
 * Window: the agent executes `nopl MAGIC(%eax)` (0F 1F 80 + imm32, a no-op) in user mode just
 * before it forks the job (MAGIC_START) and just after it reaps it (MAGIC_END). On the end
 * marker one JSON line is appended to the file named by `out=`.
 *
 * Arguments (-plugin file=costmodel.so,arg=K=V,...):
 *   out=PATH        the per-window records (JSON lines); required
 *   model=NAME      echoed into every record
 *   pti=on|off      off: kernel pages (>= kernel_base) are global, survive CR3 writes
 *   kernel_base=X   first kernel virtual address (0xc0000000: the 3G/1G split)
 *   large_lo=X, large_hi=X   kernel range mapped with 2 MiB pages (the lowmem direct map)
 *   invlpg_lo=X     INVLPG drops every 4 KiB entry at or above X (its target is invisible)
 *   itlb=E:W, dtlb=E:W, itlb2m=E:W, dtlb2m=E:W, stlb=E:W   entries:ways (stlb=0:0: none)
 *                   the run-time geometry (model=): its counts are the record's top-level
 *                   *_l1_miss_* and *_walk_* keys
 *   geo=NAME/ITLB/ITLB2M/DTLB/DTLB2M/STLB   another geometry simulated beside it, each part
 *                   E:W as above, e.g. geo=p4-2003/128:4/0:0/64:64/0:0/0:0; repeatable (up to
 *                   MAX_GEOS in all), NAME of [A-Za-z0-9._-]; its counts are in the record's
 *                   "geometries" object under NAME, with the same keys
 *
 * Every geometry sees the same lookups, the same CR3/CR4 flushes and the same INVLPG
 * approximation (invlpg_lo). Besides the user/kernel split, data-side misses and walks on
 * 4 KiB pages at or above invlpg_lo (the kmap/fixmap window INVLPG drops) are counted again
 * as dtlb_l1_miss_kmap and dtlb_walk_kmap, in every geometry.
 *
 * Counting is single-vCPU (icount forces it); install refuses more than one vCPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef COSTMODEL_SYSTEM_HEADER
#include <qemu-plugin.h>
#else
#include "qemu_plugin_api.h"
#endif

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAGIC_START 0x6c61b001u
#define MAGIC_END 0x6c61b0ffu
#define MAX_WAYS 64
#define MAX_GEOS 8

/* ---- counters ------------------------------------------------------------------------- */

/* Counted always by inline ops; a window reports end - start. */
enum {
	G_EXEC_USER, G_EXEC_KERNEL,	/* TCG executions (each rep iteration is one) */
	G_REP_EXEC_USER, G_REP_EXEC_KERNEL,
	G_REP_ITERS_USER, G_REP_ITERS_KERNEL,
	G_REP_BYTES_USER, G_REP_BYTES_KERNEL,
	G_CMPS_LOADS_USER, G_CMPS_LOADS_KERNEL,	/* rep cmps: two loads per iteration */
	G_CMPS_BYTES_USER, G_CMPS_BYTES_KERNEL,
	G_LOADS, G_STORES,
	G_N
};
static uint64_t g[G_N], g_base[G_N];

/* Counted by callbacks, only inside a window; the same for every TLB geometry. */
enum {
	W_INVLPG, W_CR3, W_CR4,
	W_DTLB_ACCESS_USER, W_DTLB_ACCESS_KERNEL, W_ITLB_ACCESS,
	W_N
};
static uint64_t w[W_N];
static const char *const w_names[W_N] = {
	"invlpg", "cr3_writes", "cr4_writes",
	"dtlb_access_user", "dtlb_access_kernel", "itlb_access",
};

/* Counted per TLB geometry, only inside a window. */
enum {
	T_ITLB_L1_MISS_USER, T_ITLB_L1_MISS_KERNEL, T_ITLB_WALK_USER, T_ITLB_WALK_KERNEL,
	T_DTLB_L1_MISS_USER, T_DTLB_L1_MISS_KERNEL, T_DTLB_WALK_USER, T_DTLB_WALK_KERNEL,
	T_DTLB_L1_MISS_KMAP, T_DTLB_WALK_KMAP,	/* again, those at or above invlpg_lo */
	T_N
};
static const char *const t_names[T_N] = {
	"itlb_l1_miss_user", "itlb_l1_miss_kernel", "itlb_walk_user", "itlb_walk_kernel",
	"dtlb_l1_miss_user", "dtlb_l1_miss_kernel", "dtlb_walk_user", "dtlb_walk_kernel",
	"dtlb_l1_miss_kmap", "dtlb_walk_kmap",
};

static int active;
static uint64_t seq;
/*
 * Until the first start marker only the markers are instrumented, so booting the guest costs
 * next to nothing; the first marker asks QEMU to reset the plugin (which flushes every
 * translation) and re-registers full instrumentation. That first window is partial.
 */
static qemu_plugin_id_t self_id;
static int full, partial, reset_requested;

/* ---- configuration -------------------------------------------------------------------- */

static const char *out_path;
static int pti = 1;
static uint64_t kernel_base = 0xc0000000u;
static uint64_t large_lo = 0xc0000000u, large_hi = 0xf8000000u;
static uint64_t invlpg_lo = 0xff000000u;

/* ---- the TLB model --------------------------------------------------------------------- */

/* An entry's tag: page number << 2 | large << 1 | valid; global kept beside it. */
struct tlb {
	const char *name;
	unsigned entries, ways, sets;
	uint64_t *tag;
	uint8_t *global;
	uint64_t *stamp;
	uint64_t clock;
};

/* One machine's TLBs and their counts; geo[0] is the run-time model's (model=, itlb=...). */
struct geometry {
	char name[64];
	struct tlb itlb, itlb2m, dtlb, dtlb2m, stlb;
	uint64_t n[T_N];
};

static struct geometry geo[MAX_GEOS] = { {
	.itlb = { .name = "itlb", .entries = 128, .ways = 8 },
	.itlb2m = { .name = "itlb2m", .entries = 8, .ways = 8 },
	.dtlb = { .name = "dtlb", .entries = 64, .ways = 4 },
	.dtlb2m = { .name = "dtlb2m", .entries = 32, .ways = 4 },
	.stlb = { .name = "stlb", .entries = 1536, .ways = 12 },
} };
static int n_geo = 1;

/* The page key each side (0: data, 1: instructions) looked up last; 0 after any flush. */
static uint64_t last_key[2];

static struct tlb *geo_tlb(struct geometry *gm, int i)
{
	struct tlb *all[] = { &gm->itlb, &gm->itlb2m, &gm->dtlb, &gm->dtlb2m, &gm->stlb };

	return all[i];
}

static int tlb_init(struct tlb *t)
{
	if (!t->entries)
		return 0;
	if (!t->ways || t->ways > MAX_WAYS || t->entries % t->ways)
		return -1;
	t->sets = t->entries / t->ways;
	t->tag = calloc(t->entries, sizeof(*t->tag));
	t->global = calloc(t->entries, 1);
	t->stamp = calloc(t->entries, sizeof(*t->stamp));
	return t->tag && t->global && t->stamp ? 0 : -1;
}

/* Look key up; on a miss fill it (LRU victim). Returns 1 on a hit. */
static int tlb_access(struct tlb *t, uint64_t key, int global)
{
	unsigned set = (unsigned)((key >> 2) % t->sets), i, victim = 0;
	uint64_t *tag = &t->tag[set * t->ways], *stamp = &t->stamp[set * t->ways];
	uint64_t oldest = UINT64_MAX;

	t->clock++;
	for (i = 0; i < t->ways; i++)
		if (tag[i] == key) {
			stamp[i] = t->clock;
			return 1;
		}
	for (i = 0; i < t->ways; i++) {	/* the first free way, else the least recent */
		if (!(tag[i] & 1)) {
			victim = i;
			break;
		}
		if (stamp[i] < oldest) {
			oldest = stamp[i];
			victim = i;
		}
	}
	tag[victim] = key;
	t->global[set * t->ways + victim] = (uint8_t)global;
	stamp[victim] = t->clock;
	return 0;
}

/* Drop entries: all (keep_global=0), the non-global ones, or the 4 KiB ones at >= lo. */
static void tlb_flush(struct tlb *t, int keep_global)
{
	unsigned i;

	for (i = 0; i < t->entries; i++)
		if (!(keep_global && t->global[i]))
			t->tag[i] = 0;
}

static void tlb_flush_range(struct tlb *t, uint64_t lo)
{
	unsigned i;

	for (i = 0; i < t->entries; i++)
		if ((t->tag[i] & 1) && !(t->tag[i] & 2) && (t->tag[i] >> 2) >= (lo >> 12))
			t->tag[i] = 0;
}

static void flush_all(int keep_global)
{
	int j, i;

	for (j = 0; j < n_geo; j++)
		for (i = 0; i < 5; i++)
			if (geo_tlb(&geo[j], i)->entries)
				tlb_flush(geo_tlb(&geo[j], i), keep_global);
	last_key[0] = last_key[1] = 0;
}

/*
 * One lookup, in every geometry. A lookup of the page this side looked up last is a hit in
 * every geometry's L1 that changes no LRU order (that entry is its set's most recent: the
 * other side uses other L1 arrays, and a hit leaves the second level alone), so it is skipped.
 */
static void translate(uint64_t addr, int instr)
{
	int kernel = addr >= kernel_base;
	int large = kernel && addr >= large_lo && addr < large_hi;
	int kmap = !instr && !large && addr >= invlpg_lo;
	int global = kernel && !pti;
	uint64_t key = ((large ? addr >> 21 : addr >> 12) << 2) | ((uint64_t)large << 1) | 1;
	int i;

	if (key == last_key[instr])
		return;
	last_key[instr] = key;
	for (i = 0; i < n_geo; i++) {
		struct geometry *gm = &geo[i];
		/* without a separate large-page L1 array large pages share the 4 KiB one */
		struct tlb *l1 = instr ? (large && gm->itlb2m.entries ? &gm->itlb2m : &gm->itlb)
				       : (large && gm->dtlb2m.entries ? &gm->dtlb2m : &gm->dtlb);

		if (tlb_access(l1, key, global))
			continue;
		gm->n[instr ? T_ITLB_L1_MISS_USER + kernel : T_DTLB_L1_MISS_USER + kernel]++;
		gm->n[T_DTLB_L1_MISS_KMAP] += kmap;
		if (gm->stlb.entries && tlb_access(&gm->stlb, key, global))
			continue;
		gm->n[instr ? T_ITLB_WALK_USER + kernel : T_DTLB_WALK_USER + kernel]++;
		gm->n[T_DTLB_WALK_KMAP] += kmap;
	}
}

/* ---- callbacks ------------------------------------------------------------------------- */

enum rep_kind { REP_NONE, REP_STORE, REP_LOAD, REP_CMPS };

/*
 * Every load and store: counted always (a window reports the difference), priced by the TLB
 * model inside a window. udata is NULL, or a rep string instruction's kind | size << 4 |
 * kernel << 8, whose iterations are counted from its own accesses. QEMU 7.2's inline memory
 * ops do not honour their R/W filter (docs/cost-model.md), so loads, stores and rep
 * iterations are counted here, from qemu_plugin_mem_is_store().
 */
static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *ud)
{
	int store = qemu_plugin_mem_is_store(info);
	uintptr_t rep = (uintptr_t)ud;

	(void)vcpu;
	g[store ? G_STORES : G_LOADS]++;
	if (rep) {
		unsigned kind = rep & 15, size = (rep >> 4) & 15, kernel = (rep >> 8) & 1;

		if (kind == REP_CMPS) {
			g[G_CMPS_LOADS_USER + kernel]++;
			g[G_CMPS_BYTES_USER + kernel] += size;
		} else if ((kind == REP_STORE) == store) {
			g[G_REP_ITERS_USER + kernel]++;
			g[G_REP_BYTES_USER + kernel] += size;
		}
	}
	if (!active)
		return;
	vaddr &= 0xffffffffu;
	w[vaddr >= kernel_base ? W_DTLB_ACCESS_KERNEL : W_DTLB_ACCESS_USER]++;
	translate(vaddr, 0);
}

/* udata: low 32 bits the TB's first address, high 32 bits its last instruction's. */
static void on_tb(unsigned int vcpu, void *ud)
{
	uint64_t v = (uint64_t)(uintptr_t)ud, first = v & 0xffffffffu, last = v >> 32;

	(void)vcpu;
	if (!active)
		return;
	w[W_ITLB_ACCESS]++;
	translate(first, 1);
	if ((last >> 12) != (first >> 12))
		translate(last, 1);
}

/* The same approximation in every geometry: drop each 4 KiB entry at or above invlpg_lo. */
static void on_invlpg(unsigned int vcpu, void *ud)
{
	int j, i;

	(void)vcpu, (void)ud;
	w[W_INVLPG] += active;
	for (j = 0; j < n_geo; j++)
		for (i = 0; i < 5; i++)
			if (geo_tlb(&geo[j], i)->entries)
				tlb_flush_range(geo_tlb(&geo[j], i), invlpg_lo);
	last_key[0] = last_key[1] = 0;
}

static void on_cr3(unsigned int vcpu, void *ud)
{
	(void)vcpu, (void)ud;
	w[W_CR3] += active;
	flush_all(1);
}

static void on_cr4(unsigned int vcpu, void *ud)
{
	(void)vcpu, (void)ud;
	w[W_CR4] += active;
	flush_all(0);	/* Linux writes CR4 to toggle PGE: everything goes, globals too */
}

/* a - b, or 0 when b > a (see rep_insns in docs/cost-model.md) */
static uint64_t sub0(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/*
 * Append "key":value for count counters at buf + n (a comma first unless after a {); the
 * new length.
 */
static int put_counts(char *buf, size_t size, int n, const char *const *names,
		      const uint64_t *v, int count)
{
	int i;

	for (i = 0; i < count && n > 0 && (size_t)n < size; i++)
		n += snprintf(buf + n, size - (size_t)n, "%s\"%s\":%" PRIu64,
			      buf[n - 1] == '{' ? "" : ",", names[i], v[i]);
	return n;
}

static void write_record(void)
{
	static char buf[16384];
	int n, i, fd;
	uint64_t d[G_N];

	for (i = 0; i < G_N; i++)
		d[i] = g[i] - g_base[i];
	n = snprintf(buf, sizeof(buf),
		     "{\"event\":\"window\",\"seq\":%" PRIu64 ",\"model\":\"%s\",\"pti\":%s,"
		     "\"partial\":%s,"
		     "\"exec_user\":%" PRIu64 ",\"exec_kernel\":%" PRIu64 ","
		     "\"insn_user\":%" PRIu64 ",\"insn_kernel\":%" PRIu64 ","
		     "\"rep_exec_user\":%" PRIu64 ",\"rep_exec_kernel\":%" PRIu64 ","
		     "\"rep_iters_user\":%" PRIu64 ",\"rep_iters_kernel\":%" PRIu64 ","
		     "\"rep_bytes_user\":%" PRIu64 ",\"rep_bytes_kernel\":%" PRIu64 ","
		     "\"rep_insns_user\":%" PRIu64 ",\"rep_insns_kernel\":%" PRIu64 ","
		     "\"loads\":%" PRIu64 ",\"stores\":%" PRIu64,
		     seq, geo[0].name, pti ? "true" : "false", partial ? "true" : "false",
		     d[G_EXEC_USER], d[G_EXEC_KERNEL],
		     /* an architectural instruction: an execution that is not a rep iteration */
		     d[G_EXEC_USER] - d[G_REP_ITERS_USER] - d[G_CMPS_LOADS_USER] / 2,
		     d[G_EXEC_KERNEL] - d[G_REP_ITERS_KERNEL] - d[G_CMPS_LOADS_KERNEL] / 2,
		     d[G_REP_EXEC_USER], d[G_REP_EXEC_KERNEL],
		     d[G_REP_ITERS_USER] + d[G_CMPS_LOADS_USER] / 2,
		     d[G_REP_ITERS_KERNEL] + d[G_CMPS_LOADS_KERNEL] / 2,
		     d[G_REP_BYTES_USER] + d[G_CMPS_BYTES_USER] / 2,
		     d[G_REP_BYTES_KERNEL] + d[G_CMPS_BYTES_KERNEL] / 2,
		     /* under icount a rep instruction executes once more than it iterates */
		     sub0(d[G_REP_EXEC_USER], d[G_REP_ITERS_USER] + d[G_CMPS_LOADS_USER] / 2),
		     sub0(d[G_REP_EXEC_KERNEL], d[G_REP_ITERS_KERNEL] + d[G_CMPS_LOADS_KERNEL] / 2),
		     d[G_LOADS], d[G_STORES]);
	n = put_counts(buf, sizeof(buf), n, w_names, w, W_N);
	n = put_counts(buf, sizeof(buf), n, t_names, geo[0].n, T_N);
	for (i = 1; i < n_geo && n > 0 && (size_t)n < sizeof(buf); i++) {
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s\"%s\":{",
			      i == 1 ? ",\"geometries\":{" : ",", geo[i].name);
		n = put_counts(buf, sizeof(buf), n, t_names, geo[i].n, T_N);
		if (n > 0 && (size_t)n < sizeof(buf))
			n += snprintf(buf + n, sizeof(buf) - (size_t)n, "}%s",
				      i == n_geo - 1 ? "}" : "");
	}
	if (n <= 0 || (size_t)n + 3 > sizeof(buf)) {
		qemu_plugin_outs("costmodel: window record too long, dropped\n");
		return;
	}
	buf[n++] = '}';
	buf[n++] = '\n';
	fd = open(out_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, buf, (size_t)n) != n)
		qemu_plugin_outs("costmodel: short write to the output file\n");
	close(fd);
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

static void on_reset(qemu_plugin_id_t id)
{
	full = 1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
}

static void on_marker(unsigned int vcpu, void *ud)
{
	int i;

	(void)vcpu;
	if (!full && !reset_requested) {
		reset_requested = 1;
		qemu_plugin_reset(self_id, on_reset);
	}
	if ((uintptr_t)ud == MAGIC_START) {
		partial = !full;
		memcpy(g_base, g, sizeof(g));
		memset(w, 0, sizeof(w));
		for (i = 0; i < n_geo; i++)
			memset(geo[i].n, 0, sizeof(geo[i].n));
		flush_all(0);	/* every window starts from an empty TLB */
		active = 1;
	} else if (active) {
		active = 0;
		seq++;
		write_record();
	}
}

/* ---- translation: decode just enough x86 ----------------------------------------------- */

/* The agent's window markers: `nopl MAGIC(%eax)`, 0F 1F 80 imm32, in user mode only. */
static void instrument_marker(struct qemu_plugin_insn *insn, const uint8_t *b, size_t n,
			      int kernel)
{
	uint32_t imm;

	if (kernel || n != 7 || b[0] != 0x0f || b[1] != 0x1f || b[2] != 0x80)
		return;
	imm = (uint32_t)b[3] | (uint32_t)b[4] << 8 | (uint32_t)b[5] << 16 | (uint32_t)b[6] << 24;
	if (imm == MAGIC_START || imm == MAGIC_END)
		qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
						       (void *)(uintptr_t)imm);
}

static void instrument(struct qemu_plugin_insn *insn)
{
	const uint8_t *b = qemu_plugin_insn_data(insn);
	size_t n = qemu_plugin_insn_size(insn), i = 0;
	uint64_t va = qemu_plugin_insn_vaddr(insn) & 0xffffffffu;
	int kernel = va >= kernel_base, rep = 0, opsize16 = 0;
	enum rep_kind kind = REP_NONE;
	unsigned size;

	if (!full) {
		instrument_marker(insn, b, n, kernel);
		return;
	}
	qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
						   &g[G_EXEC_USER + kernel], 1);
	for (; i < n; i++) {	/* legacy prefixes */
		if (b[i] == 0xf2 || b[i] == 0xf3)
			rep = 1;
		else if (b[i] == 0x66)
			opsize16 = 1;
		else if (!(b[i] == 0x67 || b[i] == 0xf0 || b[i] == 0x2e || b[i] == 0x36 ||
			   b[i] == 0x3e || b[i] == 0x26 || b[i] == 0x64 || b[i] == 0x65))
			break;
	}
	if (rep && i < n) {
		switch (b[i]) {
		case 0xa4: case 0xa5: case 0xaa: case 0xab: case 0x6c: case 0x6d:
			kind = REP_STORE;	/* movs, stos, ins: one store per iteration */
			break;
		case 0xac: case 0xad: case 0xae: case 0xaf: case 0x6e: case 0x6f:
			kind = REP_LOAD;	/* lods, scas, outs: one load per iteration */
			break;
		case 0xa6: case 0xa7:
			kind = REP_CMPS;	/* two loads per iteration */
			break;
		default:
			break;		/* rep nop (pause), rep ret, tzcnt...: no string */
		}
	}
	size = kind && (b[i] & 1) ? (opsize16 ? 2 : 4) : 1;
	qemu_plugin_register_vcpu_mem_cb(
		insn, on_mem, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW,
		kind ? (void *)(uintptr_t)(kind | size << 4 | (unsigned)kernel << 8) : NULL);
	if (kind) {
		qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
							   &g[G_REP_EXEC_USER + kernel], 1);
		return;
	}
	if (i + 1 >= n || b[i] != 0x0f)
		return;
	{
		uint8_t op = b[i + 1], modrm = i + 2 < n ? b[i + 2] : 0;
		unsigned reg = (modrm >> 3) & 7, mod = modrm >> 6;

		if (op == 0x01 && i + 2 < n && reg == 7 && mod != 3)
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_invlpg,
							       QEMU_PLUGIN_CB_NO_REGS, NULL);
		else if (op == 0x22 && i + 2 < n && (reg == 3 || reg == 4))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, reg == 3 ? on_cr3 : on_cr4,
							       QEMU_PLUGIN_CB_NO_REGS, NULL);
		else
			instrument_marker(insn, b, n, kernel);
	}
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb), i;
	uint64_t first = qemu_plugin_tb_vaddr(tb) & 0xffffffffu, last = first;

	(void)id;
	for (i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);

		instrument(insn);
		if (!full)
			continue;
		if (i == n - 1)
			last = (qemu_plugin_insn_vaddr(insn) + qemu_plugin_insn_size(insn) - 1) &
			       0xffffffffu;
	}
	if (full)
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb, QEMU_PLUGIN_CB_NO_REGS,
						     (void *)(uintptr_t)(first | last << 32));
}

/* ---- install ------------------------------------------------------------------------- */

static int fail(const char *what, const char *arg)
{
	char msg[1200];

	snprintf(msg, sizeof(msg), "costmodel: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
	qemu_plugin_outs(msg);
	fputs(msg, stderr);
	return -1;
}

/* E:W into t, ending at a NUL or at stop; *rest: what follows. */
static int parse_tlb(const char *v, struct tlb *t, char stop, const char **rest)
{
	char *end;
	unsigned long e, ways;

	if (*v < '0' || *v > '9')
		return -1;
	e = strtoul(v, &end, 10);
	if (*end != ':' || end[1] < '0' || end[1] > '9')
		return -1;
	ways = strtoul(end + 1, &end, 10);
	if ((*end && *end != stop) || e > 65536 || ways > MAX_WAYS)
		return -1;
	t->entries = (unsigned)e;
	t->ways = (unsigned)ways;
	*rest = end;
	return 0;
}

static int parse_geometry(const char *v, struct tlb *t)
{
	const char *rest;

	return parse_tlb(v, t, 0, &rest) || *rest ? -1 : 0;
}

/* A model's name goes into JSON unquoted-safe: [A-Za-z0-9._-], at most 63 characters. */
static int set_name(char *dst, const char *v, size_t len)
{
	size_t i;

	if (len >= sizeof(geo[0].name))
		return -1;
	for (i = 0; i < len; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
		      (v[i] >= '0' && v[i] <= '9') || v[i] == '.' || v[i] == '_' || v[i] == '-'))
			return -1;
	memcpy(dst, v, len);
	dst[len] = 0;
	return 0;
}

/* geo=NAME/ITLB/ITLB2M/DTLB/DTLB2M/STLB: one more geometry. */
static int parse_geo(const char *v)
{
	static const char *const names[5] = { "itlb", "itlb2m", "dtlb", "dtlb2m", "stlb" };
	const char *slash = strchr(v, '/'), *rest;
	struct geometry *gm = &geo[n_geo];
	int i;

	if (n_geo == MAX_GEOS || !slash || slash == v || set_name(gm->name, v, (size_t)(slash - v)))
		return -1;
	for (i = 0, rest = slash; i < 5; i++) {
		if (*rest != '/' || parse_tlb(rest + 1, geo_tlb(gm, i), '/', &rest))
			return -1;
		geo_tlb(gm, i)->name = names[i];
	}
	if (*rest)
		return -1;
	n_geo++;
	return 0;
}

static int parse_addr(const char *v, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(v, &end, 0);
	return errno || *end || !*v ? -1 : 0;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
					   int argc, char **argv)
{
	static char rec[4096];
	int i, j, fd, n;

	if (info->version.min > QEMU_PLUGIN_VERSION || info->version.cur < QEMU_PLUGIN_VERSION) {
		snprintf(rec, sizeof(rec), "built for plugin API %d, this QEMU offers %d..%d",
			 QEMU_PLUGIN_VERSION, info->version.min, info->version.cur);
		return fail("incompatible QEMU", rec);
	}
	if (!info->system_emulation)
		return fail("needs system emulation", NULL);
	if (strcmp(info->target_name, "x86_64") && strcmp(info->target_name, "i386"))
		return fail("needs an x86 target, not", info->target_name);
	if (info->system.smp_vcpus != 1)
		return fail("counts one vCPU only (use icount)", NULL);
	for (i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const char *k = argv[i], *v = eq ? eq + 1 : "";
		size_t kl = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
		int bad = 0;

#define KEY(s) (kl == strlen(s) && !strncmp(k, s, kl))
		if (KEY("out"))
			out_path = v;
		else if (KEY("model"))
			bad = set_name(geo[0].name, v, strlen(v));
		else if (KEY("pti"))
			pti = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? 0 : (bad = 1);
		else if (KEY("kernel_base"))
			bad = parse_addr(v, &kernel_base);
		else if (KEY("large_lo"))
			bad = parse_addr(v, &large_lo);
		else if (KEY("large_hi"))
			bad = parse_addr(v, &large_hi);
		else if (KEY("invlpg_lo"))
			bad = parse_addr(v, &invlpg_lo);
		else if (KEY("itlb"))
			bad = parse_geometry(v, &geo[0].itlb);
		else if (KEY("dtlb"))
			bad = parse_geometry(v, &geo[0].dtlb);
		else if (KEY("itlb2m"))
			bad = parse_geometry(v, &geo[0].itlb2m);
		else if (KEY("dtlb2m"))
			bad = parse_geometry(v, &geo[0].dtlb2m);
		else if (KEY("stlb"))
			bad = parse_geometry(v, &geo[0].stlb);
		else if (KEY("geo"))
			bad = parse_geo(v);
		else
			return fail("unknown argument", argv[i]);
#undef KEY
		if (bad)
			return fail("bad value", argv[i]);
	}
	if (!out_path)
		return fail("needs out=PATH", NULL);
	for (j = 0; j < n_geo; j++) {
		for (i = 0; i < 5; i++)
			if (tlb_init(geo_tlb(&geo[j], i)))
				return fail(j ? "bad TLB geometry in geo= (entries must be a multiple "
						"of ways)" : "bad TLB geometry (entries must be a "
						"multiple of ways)", j ? geo[j].name :
						geo_tlb(&geo[j], i)->name);
		if (!geo[j].itlb.entries || !geo[j].dtlb.entries)
			return fail("itlb and dtlb need entries", j ? geo[j].name : NULL);
		for (i = 0; i < j; i++)
			if (!strcmp(geo[i].name, geo[j].name))
				return fail("two geometries with one name", geo[j].name);
	}
	n = snprintf(rec, sizeof(rec),
		     "{\"event\":\"install\",\"api\":[%d,%d],\"model\":\"%s\",\"pti\":%s,"
		     "\"itlb\":[%u,%u],\"dtlb\":[%u,%u],\"itlb2m\":[%u,%u],\"dtlb2m\":[%u,%u],"
		     "\"stlb\":[%u,%u],\"kernel_base\":%" PRIu64 ",\"large\":[%" PRIu64
		     ",%" PRIu64 "],\"invlpg_lo\":%" PRIu64 ",\"geometries\":{",
		     info->version.min, info->version.cur, geo[0].name, pti ? "true" : "false",
		     geo[0].itlb.entries, geo[0].itlb.ways, geo[0].dtlb.entries, geo[0].dtlb.ways,
		     geo[0].itlb2m.entries, geo[0].itlb2m.ways, geo[0].dtlb2m.entries,
		     geo[0].dtlb2m.ways, geo[0].stlb.entries, geo[0].stlb.ways, kernel_base,
		     large_lo, large_hi, invlpg_lo);
	for (j = 1; j < n_geo && n > 0 && (size_t)n < sizeof(rec); j++)
		n += snprintf(rec + n, sizeof(rec) - (size_t)n,
			      "%s\"%s\":{\"itlb\":[%u,%u],\"dtlb\":[%u,%u],\"itlb2m\":[%u,%u],"
			      "\"dtlb2m\":[%u,%u],\"stlb\":[%u,%u]}", j > 1 ? "," : "", geo[j].name,
			      geo[j].itlb.entries, geo[j].itlb.ways, geo[j].dtlb.entries,
			      geo[j].dtlb.ways, geo[j].itlb2m.entries, geo[j].itlb2m.ways,
			      geo[j].dtlb2m.entries, geo[j].dtlb2m.ways, geo[j].stlb.entries,
			      geo[j].stlb.ways);
	if (n > 0 && (size_t)n + 3 < sizeof(rec))
		n += snprintf(rec + n, sizeof(rec) - (size_t)n, "}}\n");
	else
		return fail("too many geometries for the install record", NULL);
	fd = open(out_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return fail("cannot open", out_path);
	if (write(fd, rec, (size_t)n) != n) {
		close(fd);
		return fail("cannot write", out_path);
	}
	close(fd);
	self_id = id;
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
	return 0;
}

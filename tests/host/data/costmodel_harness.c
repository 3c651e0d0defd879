// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A stand-in for QEMU's plugin API, compiled together with the cost-model plugin
 * (tests/host/test_costmodel_plugin.py): it feeds the plugin instruction bytes and memory
 * accesses the way QEMU 7.2 would, and the test reads the window records it writes.
 *
 * Usage: harness VERSION_MIN VERSION_CUR SCENARIO PLUGIN-ARGS...
 */
#include "costmodel.c"

struct qemu_plugin_insn {
	uint8_t b[16];
	size_t n;
	uint64_t va;
	qemu_plugin_vcpu_udata_cb_t cb;
	void *ud;
	int ninl, nmem;
	struct { uint64_t *p; uint64_t imm; } inl[4];
	struct { int rw; uint64_t *p; uint64_t imm; } mem[8];
	qemu_plugin_vcpu_mem_cb_t mcb;
	void *mud;
};

struct qemu_plugin_tb {
	struct qemu_plugin_insn *insns[4];
	size_t n;
	qemu_plugin_vcpu_udata_cb_t cb;
	void *ud;
};

void qemu_plugin_outs(const char *s) { fputs(s, stderr); }
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *u)
{ (void)id, (void)cb, (void)u; }
static qemu_plugin_vcpu_tb_trans_cb_t trans_cb;
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb)
{ (void)id; trans_cb = cb; }
void qemu_plugin_reset(qemu_plugin_id_t id, qemu_plugin_simple_cb_t cb) { trans_cb = NULL; cb(id); }
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
					  enum qemu_plugin_cb_flags f, void *u)
{ (void)f; tb->cb = cb; tb->ud = u; }
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *i, qemu_plugin_vcpu_udata_cb_t cb,
					    enum qemu_plugin_cb_flags f, void *u)
{ (void)f; i->cb = cb; i->ud = u; }
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *i, enum qemu_plugin_op op,
						void *p, uint64_t imm)
{ (void)op; i->inl[i->ninl].p = p; i->inl[i->ninl++].imm = imm; }
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *i, qemu_plugin_vcpu_mem_cb_t cb,
				      enum qemu_plugin_cb_flags f, enum qemu_plugin_mem_rw rw, void *u)
{ (void)f, (void)rw; i->mcb = cb; i->mud = u; }
void qemu_plugin_register_vcpu_mem_inline(struct qemu_plugin_insn *i, enum qemu_plugin_mem_rw rw,
					  enum qemu_plugin_op op, void *p, uint64_t imm)
{ (void)op; i->mem[i->nmem].rw = rw; i->mem[i->nmem].p = p; i->mem[i->nmem++].imm = imm; }
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info) { return (info >> 6) & 1; }
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb) { return tb->n; }
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb) { return tb->insns[0]->va; }
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t i)
{ return tb->insns[i]; }
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *i) { return i->b; }
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *i) { return i->n; }
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *i) { return i->va; }

/* Decode hex bytes at va; instrumented unless in a translation block (on_trans does it). */
static struct qemu_plugin_insn *decode(uint64_t va, const char *hex, int alone)
{
	static struct qemu_plugin_insn pool[64];
	static int used;
	struct qemu_plugin_insn *i = &pool[used++];
	unsigned v;

	memset(i, 0, sizeof(*i));
	i->va = va;
	while (sscanf(hex, "%2x", &v) == 1) {
		i->b[i->n++] = (uint8_t)v;
		hex += 2;
		while (*hex == ' ')
			hex++;
	}
	if (alone)
		instrument(i);
	return i;
}

static struct qemu_plugin_insn *insn(uint64_t va, const char *hex)
{
	return decode(va, hex, 1);
}

/* A translation block of instructions at consecutive addresses, translated by the plugin. */
static struct qemu_plugin_tb *block(uint64_t va, const char *a, const char *b)
{
	static struct qemu_plugin_tb pool[8];
	static int used;
	struct qemu_plugin_tb *tb = &pool[used++];

	memset(tb, 0, sizeof(*tb));
	tb->insns[tb->n++] = decode(va, a, 0);
	if (b)
		tb->insns[tb->n++] = decode(va + tb->insns[0]->n, b, 0);
	on_trans(1, tb);
	return tb;
}

static void run(struct qemu_plugin_insn *i, int rw, uint64_t addr);

static void run_block(struct qemu_plugin_tb *tb)
{
	size_t k;

	if (tb->cb)
		tb->cb(0, tb->ud);
	for (k = 0; k < tb->n; k++)
		run(tb->insns[k], 0, 0);
}

/* One memory access of an executing instruction (rw 1: load, 2: store). */
static void touch_mem(struct qemu_plugin_insn *i, int rw, uint64_t addr)
{
	int k;

	for (k = 0; k < i->nmem; k++)
		if (i->mem[k].rw & rw)
			*i->mem[k].p += i->mem[k].imm;
	if (i->mcb)
		i->mcb(0, rw == 2 ? 1u << 6 : 0, addr, i->mud);
}

/* Execute it once, with at most one memory access (rw 0: none). */
static void run(struct qemu_plugin_insn *i, int rw, uint64_t addr)
{
	int k;

	for (k = 0; k < i->ninl; k++)
		*i->inl[k].p += i->inl[k].imm;
	if (i->cb)
		i->cb(0, i->ud);
	if (rw)
		touch_mem(i, rw, addr);
}

#define USER 0x08049000u
#define START "0f 1f 80 01 b0 61 6c"
#define END "0f 1f 80 ff b0 61 6c"

int main(int argc, char **argv)
{
	qemu_info_t info = { .target_name = "x86_64", .system_emulation = true };
	struct qemu_plugin_insn *ld, *kld, *stos, *inv;
	const char *scenario = argv[3];
	int r, k, p;

	info.version.min = atoi(argv[1]);
	info.version.cur = atoi(argv[2]);
	info.system.smp_vcpus = 1;
	r = qemu_plugin_install(1, &info, argc - 4, argv + 4);
	printf("install %d\n", r);
	if (r)
		return 0;
	/* boot: light instrumentation, only markers; a kernel insn must not count */
	run(insn(0xc1000000u, "0f 01 38"), 0, 0);
	run(insn(USER, START), 0, 0);	/* first window: switches to full instrumentation */
	run(insn(USER, END), 0, 0);
	if (!strcmp(scenario, "decode")) {
		run(insn(USER, START), 0, 0);
		run(insn(0xc1000010u, "0f 01 38"), 0, 0);	/* invlpg (%eax) */
		run(insn(0xc1000013u, "0f 01 7d 08"), 0, 0);	/* invlpg 8(%ebp) */
		run(insn(0xc1000020u, "0f 01 f9"), 0, 0);	/* rdtscp: 0f 01 /7 with mod 3 */
		run(insn(0xc1000030u, "0f 22 d8"), 0, 0);	/* mov %eax,%cr3 */
		run(insn(0xc1000040u, "0f 22 e0"), 0, 0);	/* mov %eax,%cr4 */
		run(insn(0xc1000050u, "0f 22 c0"), 0, 0);	/* mov %eax,%cr0: not counted */
		run(insn(0xc1000060u, "f3 90"), 0, 0);		/* pause: rep nop, no string */
		run(insn(USER + 0x100, "0f 1f 80 01 b0 61 6d"), 0, 0);	/* another nopl */
		/* rep stosl of 4 KiB: 1,024 iterations + the final ecx == 0 execution */
		stos = insn(USER + 0x200, "f3 ab");
		for (k = 0; k < 1024; k++)
			run(stos, 2, 0x0804a000u + 4u * (unsigned)k);
		run(stos, 0, 0);
		/* rep movsw in the kernel, 3 iterations: 2 bytes each; one load + one store each */
		stos = insn(0xc1000070u, "66 f3 a5");
		for (k = 0; k < 3; k++) {
			run(stos, 1, 0xc2000000u);
			touch_mem(stos, 2, 0xc2000100u);
		}
		run(stos, 0, 0);
		/* repe cmpsb in the kernel: 2 iterations of 2 loads, then the final execution */
		stos = insn(0xc1000080u, "f3 a6");
		for (k = 0; k < 2; k++) {
			run(stos, 1, 0xc2000000u);
			touch_mem(stos, 1, 0xc2000100u);
		}
		run(stos, 0, 0);
		run(insn(USER, END), 0, 0);
	} else if (!strcmp(scenario, "itlb")) {
		/* a user block whose last instruction crosses into the next page, run twice;
		 * two kernel blocks in one 2 MiB page of the direct map */
		struct qemu_plugin_tb *u = block(0x08049ffcu, "8d 76 00", "66 90");
		struct qemu_plugin_tb *k1 = block(0xc1000000u, "90", NULL);
		struct qemu_plugin_tb *k2 = block(0xc1100000u, "90", NULL);

		run(insn(USER, START), 0, 0);
		run_block(u);
		run_block(u);
		run_block(k1);
		run_block(k2);
		run(insn(USER, END), 0, 0);
	} else if (!strcmp(scenario, "tlb")) {
		/* 100 user pages read twice: 1st pass L1 + L2 misses, 2nd pass L1 misses only
		 * (100 pages > 64-entry L1, < 1536-entry second level); 8 pages never miss twice */
		ld = insn(USER + 0x300, "8b 00");
		kld = insn(0xc1000100u, "8b 00");
		inv = insn(0xc1000110u, "0f 01 38");
		run(insn(USER, START), 0, 0);
		for (k = 0; k < 2; k++)
			for (p = 0; p < 100; p++)
				run(ld, 1, 0x10000000u + 4096u * (unsigned)p);
		for (k = 0; k < 2; k++)
			for (p = 0; p < 8; p++)
				run(ld, 1, 0x20000000u + 4096u * (unsigned)p);
		run(insn(USER, END), 0, 0);
		/* INVLPG drops the kmap window, not the direct map (2 MiB pages) */
		run(insn(USER, START), 0, 0);
		run(kld, 1, 0xffa00000u);	/* kmap window: miss */
		run(kld, 1, 0xc2000000u);	/* direct map: miss */
		run(kld, 1, 0xffa00000u);	/* hit */
		run(kld, 1, 0xc2000000u);	/* hit */
		run(inv, 0, 0);
		run(kld, 1, 0xffa00000u);	/* miss again: invalidated */
		run(kld, 1, 0xc2000000u);	/* still a hit */
		run(insn(USER, END), 0, 0);
		/* CR3 write: user entries go; kernel ones too unless pti=off (global) */
		run(insn(USER, START), 0, 0);
		run(kld, 1, 0xc2000000u);
		run(ld, 1, 0x10000000u);
		run(insn(0xc1000120u, "0f 22 d8"), 0, 0);
		run(kld, 1, 0xc2000000u);
		run(ld, 1, 0x10000000u);
		run(insn(USER, END), 0, 0);
	} else if (!strcmp(scenario, "mix")) {
		/* One window of pseudo-random lookups, printed for the test's reference model:
		 * "D addr", "I first last", "V" (INVLPG), "C" (CR3 write), "F" (CR4 write). */
		struct qemu_plugin_insn *cr3 = insn(0xc1000120u, "0f 22 d8");
		struct qemu_plugin_insn *cr4 = insn(0xc1000130u, "0f 22 e0");
		uint32_t x = 12345, a = 0, prev = 0x10000000u;

		ld = insn(USER + 0x300, "8b 00");
		inv = insn(0xc1000110u, "0f 01 38");
		run(insn(USER, START), 0, 0);
		for (k = 0; k < 40000; k++) {
			unsigned c;

			x = x * 1103515245u + 12345u;
			c = (x >> 16) % 1000;
			x = x * 1103515245u + 12345u;
			r = (int)(x >> 8);
			if (c < 250) {
				a = prev;	/* the same page again: the plugin's shortcut */
			} else if (c < 550) {
				a = 0x10000000u + 4096u * (unsigned)(r % 200) + (unsigned)(r & 0xfff);
			} else if (c < 650) {
				a = 0xc0000000u + (unsigned)r % 0x38000000u;	/* direct map */
			} else if (c < 720) {
				a = 0xff000000u + 4096u * (unsigned)(r % 48);	/* kmap window */
			} else if (c < 740) {
				a = 0xf8800000u + 4096u * (unsigned)(r % 16);	/* vmalloc */
			} else if (c < 960) {
				uint32_t first = c < 880 ? 0x08048000u + 4096u * (unsigned)(r % 40) :
						 0xc1000000u + 4096u * (unsigned)(r % 600);
				uint32_t last = first + (unsigned)(r % 5) * 1000u;

				printf("I %u %u\n", first, last);
				on_tb(0, (void *)(uintptr_t)(first | (uint64_t)last << 32));
				continue;
			} else if (c < 985) {
				printf("V\n");
				run(inv, 0, 0);
				continue;
			} else if (c < 998) {
				printf("C\n");
				run(cr3, 0, 0);
				continue;
			} else {
				printf("F\n");
				run(cr4, 0, 0);
				continue;
			}
			printf("D %u\n", a);
			run(ld, 1, a);
			prev = a;
		}
		run(insn(USER, END), 0, 0);
	}
	return 0;
}

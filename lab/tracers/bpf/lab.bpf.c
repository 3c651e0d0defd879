// SPDX-License-Identifier: GPL-2.0
/*
 * lab.bpf.c: the eBPF backend's programs, compiled on the host with clang -target bpf and
 * loaded in the i386 guest by lab-bpf.c.
 *
 * The slot a hit counts in comes from the attach cookie, so one program serves every probe.
 * The x86-32 JIT has no atomic instructions and no bpf-to-bpf calls: counters live in
 * per-CPU maps bumped with plain adds, and helpers are __always_inline. Arguments are never
 * read (libbpf's PT_REGS_PARM* would name x86_64 registers here), and every integer has an
 * explicit width because BPF's long is 64-bit while the i386 kernel's is 32-bit.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NR_SLOTS	256
#define SLOT_STACK_LOST	(NR_SLOTS - 1)	/* bpf_get_stackid() failed (map full) */
#define SLOT_LAT_LOST	(NR_SLOTS - 2)	/* a return without a recorded entry */
#define NR_TLB_REASONS	5		/* enum tlb_flush_reason */
#define NR_LOG2		64
#define STACK_DEPTH	32
#define NR_STACKS	8192

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, NR_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, NR_STACKS);
	__type(key, __u32);
	__type(value, __u64);
} stack_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} lat_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_LOG2);
	__type(key, __u32);
	__type(value, __u64);
} lat_hist SEC(".maps");

static __always_inline void bump(void *map, __u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(map, &slot);

	if (v)
		*v += 1;
}

/* The cookie's low 16 bits are the counter slot; tp_field's high bits a field offset. */
static __always_inline __u32 cookie_slot(void *ctx)
{
	return (__u32)bpf_get_attach_cookie(ctx) & 0xffff;
}

SEC("kprobe")
int kp_count(void *ctx)
{
	bump(&counts, cookie_slot(ctx));
	return 0;
}

SEC("tracepoint")
int tp_count(void *ctx)
{
	bump(&counts, cookie_slot(ctx));
	return 0;
}

/*
 * A tracepoint counted in total (slot) and per value of an int field (slot + 1 + value),
 * e.g. tlb:tlb_flush by reason. The field's offset in the record comes from the event's
 * format file, read in the guest, so no kernel layout is compiled in.
 */
SEC("tracepoint")
int tp_field(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 slot = (__u32)cookie & 0xffff;
	__u32 off = ((__u32)cookie >> 16) & 0xfff;
	__s32 val = -1;

	bump(&counts, slot);
	bpf_probe_read_kernel(&val, sizeof(val), (char *)ctx + off);
	if (val >= 0 && val < NR_TLB_REASONS)
		bump(&counts, slot + 1 + (__u32)val);
	return 0;
}

/* stackcount: hits keyed by the kernel stack that reached the probe. */
SEC("kprobe")
int kp_stack(void *ctx)
{
	__s64 id = bpf_get_stackid(ctx, &stacks, 0);
	__u32 key;
	__u64 one = 1, *v;

	if (id < 0) {
		bump(&counts, SLOT_STACK_LOST);
		return 0;
	}
	key = (__u32)id;
	v = bpf_map_lookup_elem(&stack_counts, &key);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&stack_counts, &key, &one, BPF_NOEXIST);
	return 0;
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) {
		v >>= 32;
		r += 32;
	}
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r;
}

/* funclatency: entry time per thread, log2 histogram of the duration on return. */
SEC("kprobe")
int kp_lat_entry(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 ts = bpf_ktime_get_ns();

	bpf_map_update_elem(&lat_start, &tid, &ts, BPF_ANY);
	return 0;
}

SEC("kretprobe")
int kp_lat_return(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *start = bpf_map_lookup_elem(&lat_start, &tid);
	__u64 delta;

	if (!start) {
		bump(&counts, SLOT_LAT_LOST);
		return 0;
	}
	delta = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&lat_start, &tid);
	bump(&lat_hist, log2_u64(delta));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

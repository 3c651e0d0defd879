#!/bin/sh
# Runs in the lab guest (busybox sh): where does a fork's time go?
# function_graph on a fixed set of functions (durations from the trace clock, i.e. virtual
# time under --icount), optionally kprobe hit counts, then forkstorm. Prints, per function,
# "graph FUNC CALLS TOTAL_US" and, per probe, "kprobe NAME HITS", then forkstorm's JSON line.
# Kprobes (int3 traps) inflate the durations of every traced function that contains a probed
# one, so they are off unless KPROBES is 1; lab trace counts them without function_graph.
# usage: attribute-guest.sh [PROCS] [TOUCH] [KPROBES]
P=${1:-1000}
N=${2:-16}
K=${3:-0}
T=/sys/kernel/tracing
FUNCS="kernel_clone dup_mm dup_mmap copy_page_range pgd_alloc pgd_free pmd_alloc_ukva
pmd_free_ukva __pte_alloc pte_alloc_one do_exit exit_mmap unmap_vmas free_pgtables
tlb_finish_mmu __mmdrop handle_mm_fault wp_page_copy"
PROBES="__kmap_local_pfn_prot __kmap_local_page_prot kernel_init_pages pte_alloc_one
pmd_alloc_ukva ukva_pte_offset_map ___pte_free_tlb"

echo 0 > $T/tracing_on
echo nop > $T/current_tracer
echo > $T/trace
echo 32768 > $T/buffer_size_kb
echo local > $T/trace_clock
: > $T/set_ftrace_filter
for f in $FUNCS; do
	grep -q " $f\$" /proc/kallsyms && echo "$f" >> $T/set_ftrace_filter
done
echo 1 > $T/options/funcgraph-tail
echo > $T/kprobe_events
[ "$K" = 1 ] || PROBES=
for f in $PROBES; do
	grep -q " $f\$" /proc/kallsyms && echo "p:k_$f $f" >> $T/kprobe_events
done
[ -z "$PROBES" ] || echo 1 > $T/events/kprobes/enable
echo function_graph > $T/current_tracer
echo 1 > $T/tracing_on
out=$(/workloads/forkstorm --procs "$P" --touch "$N")
echo 0 > $T/tracing_on
[ -z "$PROBES" ] || echo 0 > $T/events/kprobes/enable
awk '/ us +\|/ {
	split($0, a, "|"); d = a[1]; sub(/^.*\) */, "", d); gsub(/[^0-9.]/, "", d)
	f = a[2]; gsub(/^ +| +$/, "", f)
	if (f ~ /\(\);$/) { sub(/\(\);$/, "", f) }
	else if (f ~ /^\} \/\* /) { sub(/^\} \/\* /, "", f); sub(/ \*\/$/, "", f) }
	else next
	n[f]++; t[f] += d
} END { for (f in n) printf "graph %s %d %.1f\n", f, n[f], t[f] }' $T/trace
awk '{ sub(/^k_/, "", $1); print "kprobe", $1, $2 }' $T/kprobe_profile
echo "trace_lost $(grep -h 'overrun' $T/per_cpu/cpu0/stats | awk '{print $2}')"
echo nop > $T/current_tracer
echo > $T/kprobe_events
echo "$out"

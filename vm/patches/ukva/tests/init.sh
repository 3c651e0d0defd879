#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/t
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /tmp && mount -t tmpfs tmp /tmp
T=/sys/kernel/tracing
MODE=$(sed -n 's/.*ukvatest=\([a-z0-9,]*\).*/\1/p' /proc/cmdline)
[ -z "$MODE" ] && MODE=all
echo "=== ukvatest mode=$MODE kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "cmdline: $(cat /proc/cmdline)"
dmesg | grep -iE "ukva|isolation" 
grep -E " (pmd_alloc_ukva|pmd_free_ukva|ukva_pte_offset_map|__kmap_local_pfn_prot)$" /proc/kallsyms
grep -E "HighTotal|LowTotal" /proc/meminfo

probes() {
	echo 0 > $T/tracing_on
	echo > $T/kprobe_events
	echo 'p:kpfn __kmap_local_pfn_prot' >> $T/kprobe_events
	echo 'p:kpte __kmap_local_page_prot type=+24(%ax):u32' >> $T/kprobe_events
	echo 'hist:keys=type.hex:vals=hitcount' > $T/events/kprobes/kpte/trigger || echo "kpte hist failed"
	echo 'p:pgdalloc pgd_alloc' >> $T/kprobe_events
	echo 'p:pgdfree pgd_free' >> $T/kprobe_events
	echo 'p:ptealloc __pte_alloc' >> $T/kprobe_events
	echo 'p:ukvaalloc pmd_alloc_ukva' >> $T/kprobe_events 2>/dev/null
	echo 'p:ukvafree pmd_free_ukva' >> $T/kprobe_events 2>/dev/null
	echo 'p:ukvamap ukva_pte_offset_map' >> $T/kprobe_events 2>/dev/null
	echo 1 > $T/events/kprobes/enable
}
unprobe() {
	echo 0 > $T/events/kprobes/enable
	echo > $T/kprobe_events
}
measure() {
	name=$1; shift
	probes
	f0=$(awk '/^pgfault /{print $2}' /proc/vmstat)
	"$@"
	f1=$(awk '/^pgfault /{print $2}' /proc/vmstat)
	echo "--- measure $name: pgfault=$((f1-f0))"
	awk -v n="$name" '{printf "    %s %-10s nhit=%s\n", n, $1, $2}' $T/kprobe_profile
	awk -v n="$name" '/type:/ { if (index($0, "fffffdff")) t+=$NF; else o+=$NF } END {printf "    %s kmap-of-page-table=%d kmap-of-other=%d\n", n, t, o}' $T/events/kprobes/kpte/hist
	echo '!hist:keys=type.hex:vals=hitcount' > $T/events/kprobes/kpte/trigger
	unprobe
}

run_measure() {
	echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
	measure idle  sleep 1
	measure fault faultloop 50 4
	measure fread faultread 50
	measure fork  forkloop 100
	measure exec  execloop 100
}

run_func() {
	ukvaread $(dmesg | sed -n 's/.*UKVA page-table window at \(0x[0-9a-f]*\)-.*/\1/p' | head -1)
	ukvaread 0xc0000000
	faultloop 20 8
	forkloop 50
	execloop 30
	mremaptest 30
	pagemap 30
	echo madvise > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
	thptest 20
	threadstress 100 4
}

run_stress() {
	echo always > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
	K=/sys/kernel/mm/transparent_hugepage/khugepaged
	echo 50 > $K/scan_sleep_millisecs 2>/dev/null
	echo 50 > $K/alloc_sleep_millisecs 2>/dev/null
	echo 8192 > $K/pages_to_scan 2>/dev/null
	echo 511 > $K/max_ptes_none 2>/dev/null
	for r in 1 2 3; do
		threadstress 150 4 &
		mremaptest 60 &
		thptest 30 &
		forkloop 200 &
		execloop 60 &
		pagemap 40 &
		faultloop 40 8 &
		wait
	done
	echo "khugepaged: full_scans=$(cat $K/full_scans 2>/dev/null) pages_collapsed=$(cat $K/pages_collapsed 2>/dev/null)"
	grep -E "thp_|pgfault" /proc/vmstat | grep -v " 0$" | tr '\n' ' '; echo
}

run_pages() {
	# lowmem / page-table cost per process: N sleeping processes
	N=300
	snap() { sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1; grep -E "^(LowFree|PageTables):" /proc/meminfo; }
	snap > /tmp/m0
	i=0; while [ $i -lt $N ]; do sleep 1000 & i=$((i+1)); done
	sleep 3
	snap > /tmp/m1
	paste /tmp/m0 /tmp/m1 | awk -v n=$N '{printf "pages: %s before=%s after=%s per-process=%.2f kB\n", $1, $2, $5, ($5-$2)/n}'
	grep VmPTE /proc/$!/status
	kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
}

run_timing() {
	echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
	for r in 1 2 3; do
		for w in "faultloop 100 4" "faultread 100" "forkloop 300" "execloop 200"; do
			t0=$(cut -d' ' -f1 /proc/uptime)
			$w > /dev/null
			t1=$(cut -d' ' -f1 /proc/uptime)
			echo "timing: $w: $(echo "$t0 $t1" | awk '{printf "%.2f", $2-$1}') s"
		done
	done
}

run_oom() {
	# OOM kills with the OOM reaper racing exit_mmap(); boot with mem=1G or so
	for r in 1 2 3 4 5 6; do
		hog &
		faultloop 20 4 > /dev/null &
		wait
	done
	echo "oom: $(dmesg | grep -c 'Out of memory: Killed') kills, $(dmesg | grep -c 'oom_reaper: reaped') reaped"
	faultloop 10 4
}

case ",$MODE," in *,all,*|*,measure,*) run_measure;; esac
case ",$MODE," in *,oom,*) run_oom;; esac
case ",$MODE," in *,timing,*) run_timing;; esac
case ",$MODE," in *,all,*|*,func,*) run_func;; esac
case ",$MODE," in *,all,*|*,pages,*) run_pages;; esac
case ",$MODE," in *,all,*|*,stress,*) run_stress;; esac
echo "=== dmesg problems:"
dmesg | grep -E "BUG|WARNING|Oops|bad pmd|UKVA:|general protection|Call Trace" | head -30
echo "=== ukvatest done"
poweroff -f

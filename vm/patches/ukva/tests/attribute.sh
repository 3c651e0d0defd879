#!/bin/bash
# Where does a fork's guest time go? For each configuration: boot it under --icount (1 vCPU,
# virtual time), run attribute-guest.sh (function_graph + kprobes around forkstorm), power off.
# Prints per-fork call counts and microseconds per function, and kprobe hits per fork.
# usage: vm/patches/ukva/tests/attribute.sh [CONFIG...]   (default: built-lowpte ukva)
#        PROCS=1000 TOUCH=16 to change the workload, KPROBES=1 to count kprobes too
#        (their traps inflate the durations)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab=${LAB:-$here/../../../../.venv/bin/lab}
procs=${PROCS:-1000}
touch=${TOUCH:-16}
out=${OUT:-/tmp/ukva-attribute}
mkdir -p "$out"
# a state directory of our own: never talk to (or power off) someone else's guest
export UKVA_LAB_STATE=${UKVA_LAB_STATE:-$out/state}
[ $# -gt 0 ] || set -- built-lowpte ukva
for cfg in "$@"; do
	"$lab" up --config "$cfg" --icount >/dev/null
	trap '"$lab" down >/dev/null' EXIT
	"$lab" exec --timeout 1200 -- sh -c "$(cat "$here/attribute-guest.sh")" sh "$procs" "$touch" "${KPROBES:-0}" \
		> "$out/$cfg.txt"
	"$lab" down >/dev/null
	trap - EXIT
done
python3 - "$out" "$procs" "$@" <<'PY'
import json, sys
out, procs, cfgs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
data = {}
for c in cfgs:
    g, k, w = {}, {}, {}
    for line in open(f"{out}/{c}.txt"):
        p = line.split()
        if p and p[0] == "graph":
            g[p[1]] = (int(p[2]), float(p[3]))
        elif p and p[0] == "kprobe":
            k[p[1]] = int(p[2])
        elif line.startswith("{"):
            w = json.loads(line)
    data[c] = (g, k, w)
funcs = sorted({f for g, _, _ in data.values() for f in g})
print(f"per fork ({procs} forks, touch from the workload); calls / µs (function_graph, icount time)")
print(f"{'function':22}" + "".join(f"{c:>24}" for c in cfgs))
for f in funcs:
    row = ""
    for c in cfgs:
        n, t = data[c][0].get(f, (0, 0.0))
        row += f"{n / procs:>10.2f} {t / procs:>10.2f} µs "
    print(f"{f:22}{row}")
print(f"{'kprobe hits per fork':22}")
for p in sorted({p for _, k, _ in data.values() for p in k}):
    print(f"{p:22}" + "".join(f"{data[c][1].get(p, float('nan')) / procs:>24.2f}" for c in cfgs))
print(f"{'forkstorm µs/fork':22}" + "".join(
    f"{data[c][2].get('elapsed_ns', 0) / 1000 / procs:>24.2f}" for c in cfgs))
PY

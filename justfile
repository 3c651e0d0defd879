# ukva-lab tasks. `./setup.sh` first (it installs just itself into .venv).
set shell := ["bash", "-euo", "pipefail", "-c"]
export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# list the recipes
default:
    @just --list

# install system packages (apt) and the lab into .venv
setup:
    ./setup.sh

# the main job: boot highpte, trace forkstorm on highpte and lowpte (icount: stable guest time), write a dashboard
demo procs="1000" repeat="3":
    lab up --config highpte
    lab status
    lab down
    lab trace --workload forkstorm --config highpte,lowpte --repeat {{repeat}} --param procs={{procs}} --icount
    lab dashboard latest -o dashboards/demo.html

# run a study on the guest and publish it: bundle, REPORT.md and the README block (analysis/NAME/)
publish name:
    lab study analysis/{{name}}/plan.toml --publish

# regenerate a published study's REPORT.md and README block from its committed bundle
report name:
    lab report analysis/{{name}}/

# every test: the fast host tests, then the tests that boot real guests and the Docker image's,
# on two pytest-xdist workers; --dist loadscope keeps a module's (or a class's) tests, which
# share one booted guest or run, on one worker (xdist 3.8's loadgroup does nothing on pytest 9)
test:
    pytest -q -n 2 tests/host
    pytest -q -n 2 --dist loadscope --durations=30 tests/guest tests/docker

# build the ukva-lab Docker image unless the one for these files exists (tags ukva-lab, ukva-lab:KEY)
image:
    vm/docker/image.sh

# only the fast host tests (no QEMU)
test-host:
    pytest -q tests/host

# lint and type-check
check:
    ruff check lab tests
    mypy

# warm `lab up` to ready vs a bare QEMU boot of the same kernel+initramfs (median of 5)
bench-boot runs="5":
    python3 benchmarks/bench_boot.py --runs {{runs}}

# tracer overhead: forkstorm guest time with and without probes, under --icount
bench-trace procs="1000" repeat="3" backend="ftrace,ebpf":
    python3 benchmarks/bench_trace_overhead.py --procs {{procs}} --repeat {{repeat}} --backend {{backend}}

# SMP evidence: 2-vCPU real-time boots, each with probe attach/forkstorm/detach cycles; counts soft lockups (thread=single|multi)
smp-evidence boots="20" cycles="10" thread="single":
    python3 benchmarks/smp_probe_cycles.py --boots {{boots}} --cycles {{cycles}} --thread {{thread}} --log results/smp-evidence-{{thread}}.jsonl

# cost-model plugin overhead: host wall time of the same forkstorm run with and without it (icount)
bench-costmodel runs="3" procs="1000":
    python3 benchmarks/bench_costmodel.py --runs {{runs}} --procs {{procs}}

# lab study wall time on 1 and on 2 Dask workers, and the ratio (goal <= 0.6 on 2 cores); kernels cached first
bench-study plan="analysis/ukva/plan.toml":
    python3 benchmarks/bench_study.py --plan {{plan}}

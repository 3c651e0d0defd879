#!/bin/bash
# Mutation run for the UKVA series: remove one hook at a time and show which guest test of
# tests/guest/test_ukva.py fails. A mutant that passes every test SURVIVED (the tests would
# not catch that broken series).
#
# usage: vm/patches/ukva/tests/mutate.sh [MUTANT...]     (default: all; --list to list them,
#        --patches [MUTANT...] to only make and print the mutant patches)
#
# Each mutant is the committed series plus one extra patch, 0099-mutant-NAME.patch, made by
# applying the series to the touched files of the pristine tree, editing one line and taking
# the diff. It is tested in a throw-away git worktree of HEAD (so the lab there builds its own
# kernels, keyed by content, and never touches this checkout's series):
#   PYTHONPATH=WORKTREE .venv/bin/python -m pytest -q -x tests/guest/test_ukva.py
# -x: a mutant is killed by the first test that fails; the rest are not run (set
# MUTATE_ALL=1 to run every test and list every failure). The tests run in file order: the
# ukva guest (boot, window, 60 s stress with probe counts, threads moving whole tables), the
# six-workload study, then ukva-debug (5 min stress with THP, the stale-slot injector), nopti.
# Cost per mutant: the ukva kernel rebuilt (ccache: minutes), ukva-debug too if the mutant
# lives that long, and the guest tests up to the first failure (3-15 min). Respect the lab's
# rule: one guest or one build at a time, so run mutants one after the other (this script
# does) and nothing else alongside. PYTHON overrides the interpreter (default: the
# checkout's .venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ukva-lab
src=${UKVA_SRC:-$(ls -d "$cache"/src/linux-source-6.1_* | tail -1)}
work=${WORK:-/tmp/ukva-mutate}
series=$repo/vm/patches/ukva
python=${PYTHON:-$repo/.venv/bin/python}
stop_first=-x
[ -z "${MUTATE_ALL:-}" ] || stop_first=

declare -A FILE EXPR WHAT
m=populate;        FILE[$m]=arch/x86/include/asm/pgalloc.h
EXPR[$m]='/ukva_pmd_populate(mm, pmd, pfn);/d'
WHAT[$m]="pmd_populate() no longer mirrors a new table into the window"
m=free-tlb;        FILE[$m]=arch/x86/include/asm/pgalloc.h
EXPR[$m]='/ukva_pte_free_tlb(tlb, pte, address);/d'
WHAT[$m]="a table freed through the mmu_gather keeps its slot (no clear, no full flush)"
m=detach-move;     FILE[$m]=mm/mremap.c
EXPR[$m]='/arch_pmd_table_detach(mm, old_addr, pmd);/d'
WHAT[$m]="move_normal_pmd() leaves the old slot mapping the moved table"
m=detach-collapse; FILE[$m]=mm/pgtable-generic.c
EXPR[$m]='/arch_pmd_table_detach(vma->vm_mm, address, pmd);/d'
WHAT[$m]="pmdp_collapse_flush() leaves the slot mapping the collapsed (freed) table"
m=exit;            FILE[$m]=arch/x86/include/asm/mmu_context.h
EXPR[$m]='/ukva_exit_mmap(mm);/d'
WHAT[$m]="exit_mmap() stays lazy and kmaps every table it zaps"
m=lookup-check;    FILE[$m]=arch/x86/mm/ukva.c
EXPR[$m]='s/if (unlikely(!(s \& _PAGE_PRESENT) ||/if (0 \&\& unlikely(!(s \& _PAGE_PRESENT) ||/'
WHAT[$m]="the lookup trusts the slot without comparing it with the pmd"
m=clear-new;       FILE[$m]=arch/x86/mm/ukva.c
EXPR[$m]='s/clear_page((void \*)(ukva_base + idx \* PAGE_SIZE));/;/; s/clear_highpage(table);/;/'
WHAT[$m]="a new table that pte_alloc_one() left uncleared is installed uncleared (0012)"
ALL="populate free-tlb detach-move detach-collapse exit lookup-check clear-new"

if [ "${1:-}" = --list ]; then
	for m in $ALL; do printf '%-16s %s\n' "$m" "${WHAT[$m]}"; done
	exit 0
fi
[ $# -gt 0 ] || set -- $ALL

# the series applied to its files only (a partial tree is enough to make a diff)
make_patch() {
	local m=$1 t=$work/src-$1
	rm -rf "$t" && mkdir -p "$t/a" "$t/b"
	for f in $(grep -h '^+++ b/' "$series"/0*.patch | sed 's|^+++ b/||' | sort -u); do
		if [ -f "$src/$f" ]; then
			mkdir -p "$t/a/$(dirname "$f")"
			cp "$src/$f" "$t/a/$f"
		fi
	done
	for p in "$series"/0*.patch; do
		patch -s -p1 -F0 -d "$t/a" < "$p"
	done
	cp -a "$t/a/." "$t/b/"
	sed -i "${EXPR[$m]}" "$t/b/${FILE[$m]}"
	if cmp -s "$t/a/${FILE[$m]}" "$t/b/${FILE[$m]}"; then
		echo "mutant $m: the edit matched nothing in ${FILE[$m]}" >&2
		return 1
	fi
	(cd "$t" && diff -u "a/${FILE[$m]}" "b/${FILE[$m]}" || true) > "$t/mutant.patch"
}

mkdir -p "$work"
if [ "${1:-}" = --patches ]; then	# only make (and show) the mutant patches
	shift
	[ $# -gt 0 ] || set -- $ALL
	for m in "$@"; do make_patch "$m" && echo "== $m" && cat "$work/src-$m/mutant.patch"; done
	exit 0
fi
summary=$work/summary.txt
: > "$summary"
for m in "$@"; do
	[ -n "${FILE[$m]:-}" ] || { echo "unknown mutant $m (--list)" >&2; exit 2; }
	make_patch "$m"
	wt=$work/repo-$m
	git -C "$repo" worktree remove --force "$wt" 2>/dev/null || true
	git -C "$repo" worktree add -q --detach "$wt" HEAD
	cp "$work/src-$m/mutant.patch" "$wt/vm/patches/ukva/0099-mutant-$m.patch"
	echo "== mutant $m: ${WHAT[$m]}"
	set +e
	(cd "$wt" && PYTHONPATH="$wt" UKVA_LAB_STATE="$work/state-$m" \
		"$python" -m pytest -q -rfE $stop_first -p no:cacheprovider tests/guest/test_ukva.py) \
		> "$work/pytest-$m.log" 2>&1
	rc=$?
	set -e
	failed=$(grep -E '^(FAILED|ERROR) ' "$work/pytest-$m.log" | sed -E 's/^(FAILED|ERROR) //; s/ - .*//' | tr '\n' ' ' || true)
	if [ $rc -eq 0 ]; then
		verdict="SURVIVED (every test passed)"
	elif grep -q 'make bzImage failed' "$work/pytest-$m.log"; then
		verdict="DID NOT BUILD (fix the mutant: a compile error kills nothing)"
	else
		verdict="killed by: ${failed:-pytest exit $rc, see $work/pytest-$m.log}"
	fi
	printf '%-16s %s\n' "$m" "$verdict" | tee -a "$summary"
	git -C "$repo" worktree remove --force "$wt"
done
echo "summary: $summary"

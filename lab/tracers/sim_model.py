"""The sim backend's model: 6.1's PTE-page kmaps written down path by path.

Why it exists: a model written down path by path says what the real counts *should* be, so a
surprising measurement has something to disagree with (and the sim backend, lab/tracers/sim.py,
answers from it where no guest can boot).

How it works: a workload function (one per workload, see :data:`WORKLOADS`) tallies primitive
kernel events per path -- PTE-page maps of the current mm ("own") or of another or lazy mm
("foreign"), user data-page kmaps, PTE pages allocated and freed, mms created, TLB flushes by
kind -- from the assumptions in ``sim_model.toml``. :func:`counts_from_tally` then applies the
configuration's rule: highpte kmaps every PTE-page map in highmem, lowpte none, ukva only the
foreign ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..tomlfile import load_toml

__all__ = ["Tally", "DEFAULT_MODEL", "WORKLOADS", "MODELLED_SYMBOLS", "MODELLED_TRACEPOINTS",
           "UKVA_SYMBOLS", "TLB_REASONS", "load_model", "counts_from_tally"]

DEFAULT_MODEL = Path(__file__).with_name("sim_model.toml")

#: kprobe symbols the model produces counts for.
MODELLED_SYMBOLS = frozenset({
    "__kmap_local_pfn_prot", "__kmap_local_page_prot", "kunmap_local_indexed",
    "flush_tlb_one_kernel", "native_flush_tlb_one_user", "__pte_alloc", "pte_alloc_one",
    "___pte_free_tlb", "__pmd_alloc", "pgd_alloc", "pgd_free", "pmd_alloc_ukva", "pmd_free_ukva",
    "flush_tlb_mm_range", "switch_mm_irqs_off",
})
UKVA_SYMBOLS = frozenset({"pmd_alloc_ukva", "pmd_free_ukva"})
TLB_REASONS = ("task_switch", "remote_shootdown", "local_shootdown", "local_mm_shootdown",
               "remote_ipi_send")
MODELLED_TRACEPOINTS = frozenset({"tlb:tlb_flush", "sched:sched_switch"})


@dataclass
class Tally:
    """Primitive kernel events, before a configuration decides which maps are highmem kmaps."""

    pte_maps_own: float = 0.0       # pte_offset_map of the loaded, non-lazy mm's PTE page
    pte_maps_foreign: float = 0.0   # another mm's PTE page, or the current mm while lazy
    data_kmaps: float = 0.0         # kmap_local/atomic of user data or page-cache pages
    pte_alloc: float = 0.0          # PTE pages via __pte_alloc (-> pte_alloc_one)
    pte_prealloc: float = 0.0       # PTE pages via fault prealloc: pte_alloc_one, no __pte_alloc
    pte_free: float = 0.0           # ___pte_free_tlb
    mm_created: float = 0.0         # pgd_alloc
    mm_destroyed: float = 0.0       # pgd_free
    flush_unloaded: float = 0.0     # flush_tlb_mm_range on an mm no CPU has loaded: no tracepoint
    flush_local: float = 0.0        # ... on the loaded mm: "local mm shootdown"
    flush_lazy: float = 0.0         # ... on a lazily loaded mm: switch to init_mm instead
    flush_remote: float = 0.0       # local flushes that also IPI another CPU
    user_invlpg: float = 0.0        # INVLPGs of user pages from partial local flushes
    mm_switches: float = 0.0        # switch_mm_irqs_off from the scheduler or exec
    sched_switches: float = 0.0
    faults: float = 0.0
    cow_copies: float = 0.0
    touched_pages: float = 0.0
    execs: float = 0.0
    forks: float = 0.0

    def add(self, other: Tally, times: float = 1.0) -> Tally:
        """Add ``times`` x ``other`` into this tally; returns self."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + times * getattr(other, f.name))
        return self

    def scaled(self, times: float) -> Tally:
        return Tally().add(self, times)


def load_model(path: Path | None = None) -> dict[str, Any]:
    """Read the model TOML (default: sim_model.toml beside this file)."""
    path = path or DEFAULT_MODEL
    model = load_toml(path, "sim model")
    for section in ("model", "configs", "kernel", "guest", "timing", "images", "exec", "workloads"):
        if section not in model:
            raise UsageError(f"{path}: missing section [{section}]")
    return model


# --- building blocks shared by workloads -------------------------------------------------------

def _faults(k: dict[str, Any], *, read: float = 0, anon: float = 0, cow_file: float = 0,
            cow_copy: float = 0, reuse: float = 0, anon_pte_pages: float = 0,
            file_pte_pages: float = 0) -> Tally:
    """Page faults of the current mm (own maps): handle_pte_fault plus the handler's map."""
    n = read + anon + cow_file + cow_copy
    new_pages = anon_pte_pages + file_pte_pages
    return Tally(
        pte_maps_own=k["pte_maps_per_fault"] * n - new_pages
        + k["pte_maps_per_reuse_fault"] * reuse,
        data_kmaps=k["data_kmaps_per_anon_fault"] * anon
        + k["data_kmaps_per_cow_copy"] * (cow_file + cow_copy),
        pte_alloc=anon_pte_pages, pte_prealloc=file_pte_pages,
        # wp_page_copy: ptep_clear_flush of one page of the loaded mm
        flush_local=cow_copy, user_invlpg=cow_copy,
        faults=n + reuse, cow_copies=cow_copy + cow_file,
    )


def _fork(k: dict[str, Any], pairs: float, pte_pages: float) -> Tally:
    """dup_mmap: copy_pte_range maps src (own) and dst (foreign) per pair; dst PTE pages."""
    return Tally(
        pte_maps_own=pairs, pte_maps_foreign=pairs, pte_alloc=pte_pages, mm_created=1,
        flush_unloaded=k["flushes_per_pgd_alloc"],   # the child's pgd_alloc
        flush_local=1,                               # dup_mmap's flush_tlb_mm(oldmm)
        forks=1,
    )


def _exit(k: dict[str, Any], zap_pairs: float, pte_pages: float) -> Tally:
    """exit_mmap after exit_mm (lazy): zap maps per pair, ___pte_free_tlb per PTE page."""
    lazy_foreign = bool(k["ukva_exit_zap_is_foreign"])
    return Tally(
        pte_maps_foreign=zap_pairs if lazy_foreign else 0.0,
        pte_maps_own=0.0 if lazy_foreign else zap_pairs,
        pte_free=pte_pages, mm_destroyed=1, flush_lazy=1,   # tlb_finish_mmu on the lazy mm
    )


def _exec(m: dict[str, Any], image: dict[str, Any], old_pairs: float, old_pages: float) -> Tally:
    """execve: a new mm filled from outside, the old mm torn down (not loaded), then the image."""
    k, x = m["kernel"], m["exec"]
    t = Tally(
        mm_created=1, flush_unloaded=k["flushes_per_pgd_alloc"] + x["shift_flushes"],
        pte_alloc=x["arg_pte_pages"] + x["shift_pte_pages"], pte_free=x["shift_pte_pages"],
        # first GUP faults the stack in (1 map after the alloc), then one follow_page_pte/string
        pte_maps_foreign=x["arg_pte_pages"] + x["arg_strings"] + x["shift_pte_maps"],
        data_kmaps=k["data_kmaps_per_anon_fault"] * x["arg_pte_pages"] + x["arg_page_kmaps"],
        mm_switches=1, execs=1,                      # activate_mm
    )
    # the old mm: mmput after activate_mm, so no CPU has it loaded
    t.add(Tally(pte_maps_foreign=old_pairs, pte_free=old_pages, mm_destroyed=1, flush_unloaded=1))
    t.add(_image(k, image))
    return t


def _image(k: dict[str, Any], image: dict[str, Any]) -> Tally:
    """A freshly exec'd image faulting itself in, plus its start-up munmap/mprotect flushes."""
    t = _faults(k, read=image["read_faults"], anon=image["anon_faults"],
                cow_file=image["cow_file_faults"], anon_pte_pages=image["anon_pte_pages"],
                file_pte_pages=image["file_pte_pages"])
    return t.add(Tally(flush_local=image["misc_flushes"], user_invlpg=image["misc_flushes"]))


def _image_pages(image: dict[str, Any]) -> float:
    """PTE pages an exec'd image owns: its own plus the exec stack's (arg_pte_pages)."""
    return float(image["anon_pte_pages"] + image["file_pte_pages"] + 1)


# --- workloads ---------------------------------------------------------------------------------

def _forkstorm(m: dict[str, Any], params: dict[str, int]) -> tuple[int, dict[str, Tally]]:
    """Tally forkstorm by path; returns (units, {path: tally over the whole run})."""
    w, k = m["workloads"]["forkstorm"], m["kernel"]
    _check_params("forkstorm", params, required=("procs",), optional=("touch", "concurrency"))
    # defaults as in lab/workloads/forkstorm.toml
    procs, touch, conc = params["procs"], params.get("touch", 16), params.get("concurrency", 4)
    if procs < 1 or touch < 0 or conc < 1:
        raise UsageError("forkstorm needs procs >= 1, touch >= 0, concurrency >= 1")
    drv = _get_image(m, w["driver_image"])
    # the region is page-aligned, not PMD-aligned: expected PMDs spanned by `touch` pages
    buf_pmds = 0.0 if touch == 0 else 1.0 + (touch - 1) / w["pte_entries"]
    pairs, pages = drv["copied_pairs"] + buf_pmds, drv["copied_pte_pages"] + buf_pmds

    fork = _fork(k, pairs, pages)
    child = _faults(k, cow_copy=w["child_stack_cow_faults"] + touch, read=w["child_text_faults"])
    child.touched_pages = touch
    copy_frac = 1.0 - (1.0 - w["parent_wp_copy_fraction"]) / conc
    parent = _faults(k, cow_copy=w["parent_wp_faults"] * copy_frac,
                     reuse=w["parent_wp_faults"] * (1.0 - copy_frac))
    sched = Tally(sched_switches=w["sched_switches"], mm_switches=w["mm_switches"])
    if conc > 1 and m["guest"]["vcpus"] > 1:
        sched.flush_remote = w["remote_flush_fraction"] * (1 + parent.flush_local)
    if w["child_exec"]:
        img = _get_image(m, w["exec_image"])
        end = _exec(m, img, drv["zap_pairs"] + buf_pmds, pages)
        end.add(_exit(k, img["zap_pairs"], _image_pages(img)))
    else:
        end = _exit(k, drv["zap_pairs"] + buf_pmds, pages)

    paths = {"fork": fork.scaled(procs), "child": child.scaled(procs),
             "parent": parent.scaled(procs),
             "exit" if not w["child_exec"] else "exec+exit": end.scaled(procs),
             "sched": sched.scaled(procs)}
    if w["include_driver"]:
        agent = _get_image(m, w["agent_image"])
        drv_run = _fork(k, agent["copied_pairs"], agent["copied_pte_pages"])
        drv_run.add(_exec(m, drv, agent["copied_pairs"], agent["copied_pte_pages"]))
        drv_run.add(_faults(k, anon=touch, anon_pte_pages=buf_pmds))   # populate the buffer
        drv_run.add(_exit(k, drv["zap_pairs"] + buf_pmds, _image_pages(drv) + buf_pmds))
        paths["driver"] = drv_run
    return procs, paths


def _get_image(m: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        return dict(m["images"][name])
    except KeyError:
        raise UsageError(f"sim model has no image {name!r}") from None


def _check_params(workload: str, params: dict[str, int], required: tuple[str, ...],
                  optional: tuple[str, ...]) -> None:
    missing = [p for p in required if p not in params]
    unknown = sorted(set(params) - set(required) - set(optional))
    if missing or unknown:
        raise UsageError(f"{workload}: missing parameters {missing}, unknown {unknown}; "
                         f"takes {', '.join(required + optional)}")


#: Workload name -> tally function. Add a workload here and a [workloads.NAME] table in the TOML.
WORKLOADS: dict[str, Callable[[dict[str, Any], dict[str, int]], tuple[int, dict[str, Tally]]]] = {
    "forkstorm": _forkstorm,
}


# --- configuration rules -----------------------------------------------------------------------

def counts_from_tally(t: Tally, m: dict[str, Any], config: str) -> dict[str, float]:
    """Turn primitive events into counter values under one configuration's rules.

    Identities kept on purpose: every kmap has a kunmap (kunmap_local_indexed runs for lowmem
    addresses too and returns early), and every highmem kunmap does one flush_tlb_one_kernel,
    which itself calls native_flush_tlb_one_user.
    """
    c, k = m["configs"][config], m["kernel"]
    kmapped_pte = t.pte_maps_foreign + (0.0 if c["ukva"] else t.pte_maps_own)
    highmem_pte = kmapped_pte if c["pte_pages_in_highmem"] else 0.0
    highmem = highmem_pte + t.data_kmaps * k["user_pages_highmem_fraction"]
    task_switch = t.mm_switches + t.flush_lazy
    out = {
        "__kmap_local_page_prot": kmapped_pte + t.data_kmaps,
        "kunmap_local_indexed": kmapped_pte + t.data_kmaps,
        "__kmap_local_pfn_prot": highmem,
        "flush_tlb_one_kernel": highmem,
        "native_flush_tlb_one_user": highmem + t.user_invlpg,
        "__pte_alloc": t.pte_alloc,
        "pte_alloc_one": t.pte_alloc + t.pte_prealloc,
        "___pte_free_tlb": t.pte_free,
        "__pmd_alloc": 0.0,
        "pgd_alloc": t.mm_created,
        "pgd_free": t.mm_destroyed,
        "flush_tlb_mm_range": t.flush_unloaded + t.flush_local + t.flush_lazy,
        "switch_mm_irqs_off": task_switch,
        "tlb_flush.task_switch": task_switch,
        "tlb_flush.local_mm_shootdown": t.flush_local,
        "tlb_flush.local_shootdown": 0.0,
        "tlb_flush.remote_ipi_send": t.flush_remote,
        "tlb_flush.remote_shootdown": t.flush_remote,
        "sched_switch": t.sched_switches,
    }
    out["tlb_flush"] = sum(out[f"tlb_flush.{r}"] for r in TLB_REASONS)
    if c["ukva"]:
        out["pmd_alloc_ukva"] = t.mm_created
        out["pmd_free_ukva"] = t.mm_destroyed
    return out

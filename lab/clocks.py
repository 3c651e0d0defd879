"""The clocks a report measures time in: guest time (QEMU icount) and modelled cycles.

Why clocks, plural: icount charges one tick per instruction, so it cannot see what HIGHPTE
costs on hardware (INVLPG, CR3 writes and TLB misses are free; a ``rep stos`` page clear is
a thousand ticks). The TCG cost plugin's raw counts, priced by a machine model
(lab/costmodel), give a second, equally deterministic clock per model (issue 12). Every
figure a report gives about time (mean and CI per unit, Δ % and Welch's p against the
baseline, the share of a gap recovered) is computed for each clock by the same code: a clock
is only a per-unit series, ``records -> one value per record`` (or None when a record lacks
it), like guest time and the counters (:mod:`lab.stats`, :mod:`lab.compare`).

Which counts a model prices is :func:`lab.costmodel.record_counts`'s decision (the TLB counts
depend on the geometry simulated at run time); this module never looks inside them.
Clocks exist only when some record carries cost-plugin counts: without them a report is
exactly what it was before the cost model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compare import Figure
from .costmodel import (
    TLB_GEOMETRY,
    Model,
    list_models,
    load_model,
    modelled_cycles,
    record_counts,
)
from .stats import Record, guest_ns_per_unit

__all__ = ["Clock", "GUEST_CLOCKS", "clocks", "cycles_per_unit", "has_cost_counts",
           "LEAVES_OUT", "clock_words"]

#: Names the guest-time clock takes: its timing mode when every record has the same one.
GUEST_CLOCKS = ("icount", "realtime", "modelled", "guest time")

#: What a modelled cycle does not see, said wherever modelled figures are shown
#: (docs/cost-model.md, "What the model leaves out").
LEAVES_OUT = ("The model leaves out caches (a cache miss costs nothing), branch prediction, "
              "out-of-order overlap (a walk or an INVLPG is never hidden behind other work) "
              "and page-walk caches (every walk costs the same): modelled cycles are a "
              "consistent clock to compare configurations with, not a machine's run time.")


@dataclass(frozen=True)
class Clock:
    """One clock: its name (``icount``, or a model's name), the unit of its figures, and the
    per-unit series of a group of records."""

    name: str
    unit: str
    figure: Figure
    model: Model | None = None
    counted_with: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How tables name it: ``icount ns``, ``skylake cycles``."""
        return f"{self.name} {self.unit}"

    def describe(self) -> dict[str, Any]:
        """The clock as the report's JSON lists it (docs/json-schema.md, ``clocks``)."""
        out: dict[str, Any] = {"name": self.name, "unit": self.unit, "label": self.label,
                               "model": self.model.name if self.model else None}
        if self.model:
            out.update(description=self.model.description, clock_ghz=self.model.clock_ghz,
                       counted_with=list(self.counted_with))
        return out


def cycles_per_unit(model: Model) -> Figure:
    """Modelled cycles per unit under ``model``, one value per record; None when a record has
    no counts for it (as :func:`lab.stats.per_unit` treats a counter some records lack)."""
    def figure(records: list[Record]) -> np.ndarray | None:
        out = []
        for r in records:
            counts = record_counts(model, r)
            if counts is None:
                return None
            out.append(modelled_cycles(model, counts)["total"] / float(r["units"]))
        return np.array(out, dtype=float) if out else None
    return figure


def has_cost_counts(records: list[Record]) -> bool:
    """Whether any record carries cost-plugin counts (``record["costmodel"]``)."""
    return any(r.get("costmodel") for r in records)


def _guest_clock_name(records: list[Record]) -> str:
    timing = {str(r.get("timing")) for r in records}
    return timing.pop() if len(timing) == 1 and timing <= set(GUEST_CLOCKS) else "guest time"


def clocks(records: list[Record], models: Sequence[str] | None = None) -> list[Clock]:
    """The clocks of ``records``: guest time first, then one per machine model (every model
    in lab/costmodel/models, or those named) that prices at least one record's counts.
    The models whose own TLB geometry was simulated come first (``counted_with``: the
    geometries their TLB counts came from, as :func:`lab.costmodel.record_counts` names
    them). Empty when no record carries cost-plugin counts. Raises UsageError for an unknown model.
    Example: ``[c.label for c in clocks(recs)]`` -> ['icount ns', 'skylake cycles',
    'p4-2003 cycles'] for a run counted with skylake's geometry."""
    chosen = [load_model(n) for n in (list_models() if models is None else models)]
    if not has_cost_counts(records):
        return []
    out = []
    for model in chosen:
        priced = [c for r in records if (c := record_counts(model, r)) is not None]
        if priced:
            geometry = sorted({str(c[TLB_GEOMETRY]) for c in priced})
            out.append(Clock(model.name, "cycles", cycles_per_unit(model), model,
                             tuple(geometry)))
    # the model the run counted with first: its TLB misses are its own geometry's
    out.sort(key=lambda c: (c.name not in c.counted_with, c.name))
    return [Clock(_guest_clock_name(records), "ns", guest_ns_per_unit), *out]


def clock_words(described: list[dict[str, Any]]) -> str:
    """What each clock of a report is (its ``clocks``, as :meth:`Clock.describe` gives them)
    and what the model leaves out, in one paragraph for the README, REPORT.md and the
    dashboard; "" without modelled clocks."""
    models = [c for c in described if c.get("model")]
    if not models:
        return ""
    guest = next((c["name"] for c in described if not c.get("model")), "icount")
    return (f"{guest}: QEMU guest time, one instruction = 1 ns. "
            + "; ".join(f"{c['name']}: modelled cycles on {c.get('description') or c['name']}"
                        f" (TLB misses counted with the {', '.join(c.get('counted_with') or [])}"
                        " geometry)" for c in models)
            + ". Modelled cycles = Σ count × cost over the cost plugin's counts "
            f"(docs/cost-model.md). {LEAVES_OUT}")

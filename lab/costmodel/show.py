"""``lab cost-model list``: the machine models, every cost with its source.

Modelled cycles per unit, their CIs, Δ % from the baseline and the gap recovered are not
here: the report layer computes them for every clock (lab/report.py, lab/clocks.py) and
`lab show`, the dashboard and `lab report` format them.
"""

from __future__ import annotations

from typing import Any

from .. import ui
from . import load_model

__all__ = ["cmd_list"]


def cmd_list(json_out: bool) -> list[dict[str, Any]]:
    """``lab cost-model list``: every model with its costs and their sources."""
    from . import list_models

    out: list[dict[str, Any]] = []
    for name in list_models():
        m = load_model(name)
        out.append({"name": m.name, "description": m.description, "clock_ghz": m.clock_ghz,
                    "tlb": {k: list(v) for k, v in m.tlb.items()}, "costs": m.costs,
                    "sources": m.sources})
    if not json_out:
        for m_ in out:
            ui.out_console.print(f"[bold]{m_['name']}[/]: {m_['description']}")
            tlb = ", ".join(f"{k} {e}x{w}" if e else f"{k} -"
                            for k, (e, w) in m_["tlb"].items())
            ui.out_console.print(f"  TLB: {tlb}")
            ui.out_console.print(f"       source: {m_['sources']['tlb']['source']}")
            for k, v in m_["costs"].items():
                src = m_["sources"][k]
                ui.out_console.print(f"  {k} = {v:g} ({src['basis']}): {src['source']}",
                                     soft_wrap=True)
    return out

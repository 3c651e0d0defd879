"""The ``--cost-model`` option shared by ``lab trace``, ``lab study`` and ``lab show``.

Why a module of its own: the option is validated before anything boots (an unknown model is a
usage error, exit 2) by three commands. What a run's counts cost in each model is computed by
the report layer (lab/report.py, lab/clocks.py) and printed by show_render like every other
figure.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["CostModelOpt", "cost_model_name"]

CostModelOpt = Annotated[
    str | None,
    typer.Option("--cost-model", help="Machine model (lab cost-model list): count with the TCG "
                 "cost plugin (its TLB geometry) and show modelled cycles beside icount "
                 "(every model); implies --icount."),
]


def cost_model_name(name: str | None) -> str | None:
    """Validate --cost-model before anything boots (exit 2 on an unknown model)."""
    if name is None:
        return None
    from ..costmodel import load_model

    return load_model(name).name

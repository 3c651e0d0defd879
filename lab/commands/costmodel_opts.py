"""The ``--cost-model`` option shared by ``lab trace``, ``lab study`` and ``lab show``.

Why a module of its own: the option is validated before anything boots (an unknown model is a
usage error, exit 2), and the modelled-cycles table it adds is printed by three commands; the
pricing itself lives in lab/costmodel (analysis only, it never boots).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..results import open_run

__all__ = ["CostModelOpt", "cost_model_name", "with_costmodel", "print_costmodel"]

CostModelOpt = Annotated[
    str | None,
    typer.Option("--cost-model", help="Machine model (lab cost-model list): count with the TCG "
                 "cost plugin and show modelled cycles; implies --icount."),
]


def cost_model_name(name: str | None) -> str | None:
    """Validate --cost-model before anything boots (exit 2 on an unknown model)."""
    if name is None:
        return None
    from ..costmodel import load_model

    return load_model(name).name


def with_costmodel(data: dict[str, Any], run_id: str, model: str | None) -> dict[str, Any]:
    """``lab show --json`` data plus the modelled cycles per unit, when a model is asked for."""
    if model:
        from ..costmodel.show import costmodel_data

        data["costmodel"] = costmodel_data(open_run(run_id).records(), model)
    return data


def print_costmodel(run_id: str, model: str | None) -> None:
    """The modelled-cycles table beside icount time, when a model is asked for."""
    if model:
        from ..costmodel.show import print_costmodel as _print

        _print(open_run(run_id).records(), model)

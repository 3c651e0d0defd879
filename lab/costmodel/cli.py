"""``lab cost-model``: the machine models the cost plugin's counts can be priced with."""

from __future__ import annotations

import typer

from ..commands.common import JsonOpt, cli_errors, print_json

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)


@app.command("list")
@cli_errors
def list_cmd(json_out: JsonOpt = False) -> None:
    """Machine models (lab/costmodel/models/*.toml) with every cost and its source."""
    from .show import cmd_list

    out = cmd_list(json_out)
    if json_out:
        print_json(out)

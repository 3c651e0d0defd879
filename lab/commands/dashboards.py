"""``lab dashboard``: recorded runs (or bundles, unopened) as one offline HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import ui
from ..errors import UsageError
from ..paths import dashboards_dir
from ..results import open_run
from .common import cli_errors
from .show_render import gap_of

__all__ = ["dashboard"]


@cli_errors
def dashboard(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids (or prefixes, paths), or .labbundle.tar.gz files to show without importing.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file to write.")
    ] = None,
    baseline: Annotated[str | None, typer.Option(help="Configuration to compare against.")] = None,
    allow_mixed: Annotated[bool, typer.Option("--allow-mixed", help="Show runs of different timing modes or tracer backends together (marked MIXED).")] = False,
    gap: Annotated[str | None, typer.Option(help="BASELINE,FLOOR: add the share of that gap each other configuration recovers. Default: a study plan's 'gap'.")] = None,
    cost_model: Annotated[str | None, typer.Option("--cost-model", help="Modelled cycles in this machine model only (lab cost-model list); default: every model, when the runs carry cost-plugin counts.")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the dashboard in a web browser.")] = False,
) -> None:
    """Write one self-contained (offline) HTML dashboard comparing configurations; it opens
    with the answer as pictures (gap recovered, Δ % from the baseline) in each clock."""
    import webbrowser
    from contextlib import ExitStack

    from ..bundle import extracted
    from ..dashboard import render_dashboard

    with ExitStack() as stack:
        found = []
        for r in run_ids:
            if r.endswith(".tar.gz") and Path(r).is_file():
                found += stack.enter_context(extracted(Path(r)))
            else:
                found.append(open_run(r))
        out = output or dashboards_dir() / f"{found[0].run_id}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            pair = gap_of(found[0].manifest(), gap) if gap else None
            path = render_dashboard(found, out, baseline=baseline, allow_mixed=allow_mixed,
                                    gap=pair, cost_models=[cost_model] if cost_model else None)
        except UsageError as e:
            # stats.check_comparable names its keyword argument; say the flag instead
            raise UsageError(str(e).replace("allow_mixed=True", "--allow-mixed")) from None
    ui.out_console.print(f"dashboard written: {path}")
    if open_browser and not webbrowser.open(path.resolve().as_uri()):
        ui.warn(f"no web browser found: open {path} yourself")

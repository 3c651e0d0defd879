"""``lab sim``: fit the sim backend's model to real runs, and check it against others.

Why commands and not a script: the model must be refitted whenever kernels or workloads
change, by anyone, from the same committed bundles, and its error must be one command away.
"""

from __future__ import annotations

import json
import shlex
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import ui
from ..errors import UsageError
from ..report import jsonable
from ..simmodel import default_model_path, load_model
from ..tomlfile import dump_toml
from .common import JsonOpt, cli_errors, print_json

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=(
    "The sim backend's model: fit it to real runs, check it against others.\n\n"
    "The model gives, per configuration and workload, every counter per unit, guest time per "
    "unit, the run's meminfo changes and taskpile's per-task slopes as lines in the workload's "
    "parameters (x, or 1/x for unit counts), fitted by least squares to real runs. `lab trace "
    "--backend sim` answers from it; outside the fitted parameter range it says EXTRAPOLATED."))

Sources = Annotated[list[str], typer.Argument(help="Run ids, run directories, bundles "
                                              "(*.labbundle.tar.gz) or study folders.")]


def _open(stack: ExitStack, what: list[str]) -> dict[str, Any]:
    from ..notebook import open_runs

    out = {}
    for w in what:
        try:
            out[w] = open_runs(stack, [w])
        except OSError as e:
            raise UsageError(f"cannot read {w}: {e.strerror or e}") from None
    return out


@app.command("fit", short_help="Fit the model to real runs or bundles: -o FILE.")
@cli_errors
def fit(
    sources: Sources,
    output: Annotated[Path, typer.Option("-o", "--output", help="The model file to write, e.g. vm/sim/stock-6.1.toml (the sim backend's default).")],
    json_out: JsonOpt = False,
) -> None:
    """Fit the model from real runs: per configuration and workload, each counter per unit,
    guest time per unit, meminfo changes and taskpile slopes as lines in the parameters that
    vary in the runs; start-of-run memory against guest RAM. The file records its sources
    (with sha256), kernels and each line's fit error (largest |fitted − mean| / |mean| over
    the fitted points). Simulated runs and mixed clocks are refused."""
    from ..simmodel.check import headline_targets
    from ..simmodel.fit import fit_model

    with ExitStack() as stack:
        model = fit_model(_open(stack, sources),
                          command="lab sim fit " + " ".join(shlex.quote(s) for s in sources)
                          + f" -o {shlex.quote(str(output))}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(dump_toml(model, header=(
        "The sim backend's model, fitted by `lab sim fit` (lab/simmodel/fit.py): do not edit;\n"
        "refit from the runs named in [model.sources]. Per configuration and workload, each\n"
        "target is coef · [1, f(term)...] with f(x) = x (lin) or 1/x (inv); cv is the real\n"
        "repeats' spread, fit_error the largest relative miss on the fitted points.")))
    loaded = load_model(output)   # what the sim backend will read
    if json_out:
        print_json(jsonable({"path": str(output), "model": loaded["model"],
                             "configs": sorted(loaded["configs"])}))
        return
    cells = [(c, w) for c, v in loaded["configs"].items() for w in v["workloads"]]
    lead = set(headline_targets())
    worst = max(((t["fit_error"], c, w, n) for c, v in loaded["configs"].items()
                 for w, cell in v["workloads"].items() for n, t in cell["targets"].items()
                 if n in lead), default=(0.0, "-", "-", "-"))
    ui.out_console.print(f"fitted {len(cells)} (configuration, workload) cells from "
                         f"{loaded['model']['records']} records into {output}; largest fit "
                         f"error of a headline figure {worst[0]:.1%} ({worst[3]}, {worst[2]} on {worst[1]})",
                         soft_wrap=True)


@app.command("check", short_help="The model's error per counter against real runs.")
@cli_errors
def check(
    sources: Sources,
    model_path: Annotated[Path | None, typer.Option("--model", help="Model file (default: vm/sim/stock-6.1.toml).")] = None,
    all_targets: Annotated[bool, typer.Option("--all", help="Every counter, not only the headline ones, guest time and taskpile's slopes.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text (every row) or markdown (the README's table: the largest error per headline figure and workload, with the model's provenance).")] = "text",
    json_out: JsonOpt = False,
) -> None:
    """The model's error against real runs: per workload, parameters, configuration and
    counter, observed mean per unit, the model's value and (model − observed) / observed.
    Check against runs the model was not fitted on (analysis/sim-holdout/) for its real
    error; rows outside the fitted range are marked EXTRAPOLATED."""
    from ..simmodel.check import check_rows, headline_targets, label, markdown_table

    if fmt not in ("text", "markdown"):
        raise UsageError(f"--format must be text or markdown, not {fmt!r}")

    with ExitStack() as stack:
        runs = [r for rs in _open(stack, sources).values() for r in rs]
        model = load_model(model_path or default_model_path())
        rows = check_rows(model, runs)
    for cfg, kernel in sorted({(r["config"], r["other_kernel"]) for r in rows
                               if r["other_kernel"]}):
        ui.warn(f"{cfg}: the runs' kernel {kernel} is not the one the model was fitted on "
                f"({model['configs'][cfg]['kernel']}): their difference is not the model's "
                "error")
    if not all_targets:
        keep = set(headline_targets())
        rows = [r for r in rows if r["target"] in keep]
    if json_out:
        print_json(jsonable({"model": model["_path"], "rows": rows}))
        return
    if fmt == "markdown":
        typer.echo(markdown_table(model, rows, " ".join(sources)), nl=False)
        return
    ui.out_console.print(f"sim model {model['_path']} against {', '.join(sources)}: "
                         "(model − observed) / observed per unit", soft_wrap=True)
    last = None
    for r in rows:
        head = (r["workload"], json.dumps(r["params"], sort_keys=True), r["mem_mib"])
        if head != last:
            params = " ".join(f"{k}={v}" for k, v in sorted(r["params"].items()))
            ui.out_console.print(f"\n{r['workload']} {params} mem={r['mem_mib']}M"
                                 + (" EXTRAPOLATED: " + "; ".join(r["extrapolated"])
                                    if r["extrapolated"] else ""), soft_wrap=True)
            ui.out_console.print(f"  {'config':<14} {'per unit':<26} {'observed':>12} "
                                 f"{'model':>12} {'error':>8}", highlight=False)
            last = head
        err = "n/a" if r["error"] is None else f"{r['error']:+.1%}"
        ui.out_console.print(f"  {r['config']:<14} {label(r['target']):<26} "
                             f"{r['observed']:>12,.4g} {r['predicted']:>12,.4g} {err:>8}",
                             soft_wrap=True, highlight=False)
    errs = [abs(r["error"]) for r in rows if r["error"] is not None]
    if errs:
        ui.out_console.print(f"{len(rows)} rows; largest |error| {max(errs):.1%}, median "
                             f"{sorted(errs)[len(errs) // 2]:.1%}", soft_wrap=True)

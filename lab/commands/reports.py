"""``lab report``: a run, a bundle or a published study as text for a mail or Markdown.

    lab report analysis/ukva/              # REPORT.md, README.md and the README block, from the
                                           # folder's committed bundle
    lab report RUN --format text           # any run (or bundle): plain text under 80 columns
    lab report RUN --format markdown -o r.md

It reads stored results only and never boots a guest (lab/notebook.py, lab/render.py).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from .. import ui
from ..errors import UsageError
from ..notebook import open_runs, publish_folder, report_doc, study_folder
from ..render import FORMATS, render
from ..report import jsonable
from .common import JsonOpt, cli_errors, print_json
from .show_render import gap_of

__all__ = ["report"]


@cli_errors
def report(
    what: Annotated[list[str], typer.Argument(help="A study folder (analysis/NAME/), run ids (or prefixes, paths, 'latest') or .labbundle.tar.gz files.")],
    fmt: Annotated[str | None, typer.Option("--format", help=f"{' or '.join(FORMATS)} (default text): text is plain ASCII under 80 columns, for a mail. With a study folder, prints instead of regenerating its files.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the report here instead of printing it.")] = None,
    gap: Annotated[str | None, typer.Option(help="BASELINE,FLOOR: the gap table's configurations. Default: the study plan's 'gap'.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Configuration the others are compared with. Default: the first of each workload.")] = None,
    readme: Annotated[Path | None, typer.Option(help="For a study folder: the README whose block to rewrite (default: the repository's).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Render stored results as a report: provenance, headline table, gap recovered, taskpile
    slopes and tasks reached, differential profile (with significance marks).

    Given a study folder, regenerates its REPORT.md and README.md and the repository README's
    block for it, from the folder's committed bundle.
    """
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    folder = study_folder(Path(what[0])) if len(what) == 1 else None
    if folder and fmt is None and output is None and not json_out:
        for path in publish_folder(folder, readme):
            ui.out_console.print(f"written: {path}", soft_wrap=True)
        return
    with ExitStack() as stack:
        runs = open_runs(stack, what)
        pair = gap_of(runs[0].manifest(), gap) if gap else None
        doc = report_doc(runs, gap=pair, baseline=baseline)
    if json_out:
        print_json(jsonable(doc))
        return
    text = render(doc, fmt or "text")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        ui.out_console.print(f"report written: {output}", soft_wrap=True)

"""The results notebook: every published number is regenerated from a committed bundle.

Why: a table typed into the README cannot be told from a stale one. A published study is a
folder, ``analysis/NAME/``, holding

    plan.toml                  what was run (lab/study.py)
    NAME.labbundle.tar.gz      the runs, exported (lab/bundle/), committed
    REPORT.md                  generated from the bundle by `lab report analysis/NAME/`
    README.md                  generated: the commands that re-run, re-render and chart it

and the repository README holds, for each published study, a block between
``<!-- lab-report:NAME:begin -->`` and ``<!-- lab-report:NAME:end -->`` that the same command
rewrites. :func:`check_readme` says which block, and which line of it, differs from what its
bundle gives (tests/host/test_readme_blocks.py runs it on the real README). A block whose
study has no bundle yet must say exactly that (:func:`block_text`), so no number can sit in
the README without the data behind it.

Nothing here boots a guest: bundles are read in a temporary directory (lab.bundle.extracted).
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import SUFFIX, extracted
from .errors import UsageError
from .paths import repo_root
from .profile import annotate
from .render import render
from .report import build_report, jsonable, provenance
from .results import RunDir, open_run
from .study import PLAN_FILE

__all__ = ["report_doc", "StudyFolder", "study_folder", "open_runs", "block_text",
           "rewrite_block", "check_readme", "check_folder", "publish_folder", "folder_readme",
           "MARKER"]

#: The README block markers; {name} is the study folder's name.
MARKER = "<!-- lab-report:{name}:{end} -->"
_BLOCK = re.compile(r"<!-- lab-report:([A-Za-z0-9._-]+):begin -->\n(.*?)"
                    r"<!-- lab-report:\1:end -->", re.S)


def report_doc(runs: list[RunDir], *, gap: tuple[str, str] | None = None,
               baseline: str | None = None, title: str | None = None) -> dict[str, Any]:
    """Everything `lab report` prints about ``runs``, as data (also its --json).

    The gap is ``gap`` or the first run's plan ``gap``; profiles are every profile.json the
    runs carry, with their significance marks.
    """
    from .dashboard.provenance import split_origins

    manifests = {r.run_id: r.manifest() for r in runs}
    # a configuration measured on two hosts or kernels is two columns, as on the dashboard
    records, notes = split_origins([rec for r in runs for rec in r.records()], manifests)
    if gap is None:
        gap = next(((str(m["gap"][0]), str(m["gap"][1])) for m in manifests.values()
                    if isinstance(m.get("gap"), list) and len(m["gap"]) == 2), None)
    profiles = []
    for r in runs:
        path = r.path / "profile.json"
        if path.is_file():
            profiles.append({**annotate(json.loads(path.read_text())), "run_id": r.run_id,
                             "simulated": bool(manifests[r.run_id].get("simulated"))})
    if not records and not profiles:
        raise UsageError(f"no records in {', '.join(r.run_id for r in runs)}: nothing to report")
    first = manifests[runs[0].run_id]
    return {
        "title": title or f"ukva-lab: {first.get('plan_name') or first.get('workload')}",
        "description": first.get("description"),
        "simulated": any(m.get("simulated") for m in manifests.values()),
        "runs": [provenance(rid, m) for rid, m in manifests.items()],
        "report": build_report(records, baseline=baseline, gap=gap) if records else
        {"summary": []},
        "profiles": profiles,
        "notes": notes,
    }


@dataclass(frozen=True)
class StudyFolder:
    """``analysis/NAME/`` and the files it holds."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def plan(self) -> Path:
        return self.path / PLAN_FILE

    @property
    def bundle(self) -> Path:
        return self.path / f"{self.name}{SUFFIX}"

    @property
    def report(self) -> Path:
        return self.path / "REPORT.md"

    @property
    def readme(self) -> Path:
        return self.path / "README.md"


def study_folder(path: Path) -> StudyFolder | None:
    """The study folder ``path`` is (or whose plan.toml it is), or None."""
    if path.name == PLAN_FILE and path.is_file():
        path = path.parent
    return StudyFolder(path) if (path / PLAN_FILE).is_file() else None


def check_folder(folder: StudyFolder) -> list[str]:
    """A published folder's REPORT.md and README.md against what its bundle gives."""
    doc = _folder_doc(folder)
    if doc is None:
        return []
    want = {folder.report: _report_md(folder, doc), folder.readme: folder_readme(folder, doc)}
    out = []
    for path, text in want.items():
        have = path.read_text() if path.is_file() else ""
        if have != text:
            n = next((i for i, (x, y) in enumerate(
                zip(have.splitlines() + [""], text.splitlines() + [""], strict=False), 1)
                if x != y), 1)
            out.append(f"{_rel(path)} line {n}: study {folder.name}: differs from its bundle "
                       f"(regenerate: lab report {_rel(folder.path)}/)")
    return out


def open_runs(stack: ExitStack, what: list[str]) -> list[RunDir]:
    """Run ids, run paths, bundles (read in place) or study folders (their bundle)."""
    runs: list[RunDir] = []
    for w in what:
        folder = study_folder(Path(w))
        bundle = folder.bundle if folder else Path(w)
        if folder and not bundle.is_file():
            raise UsageError(f"{folder.path}: no {bundle.name} yet; publish it with "
                             f"'lab study {folder.plan} --publish'")
        if bundle.name.endswith(".tar.gz") and bundle.is_file():
            runs += stack.enter_context(extracted(bundle))
        else:
            runs.append(open_run(w))
    return runs


def _folder_doc(folder: StudyFolder) -> dict[str, Any] | None:
    if not folder.bundle.is_file():
        return None
    with ExitStack() as stack:
        return jsonable(report_doc(open_runs(stack, [str(folder.path)]),
                                   title=f"ukva-lab study: {folder.name}"))


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(repo_root()))
    except ValueError:
        return str(p)


def block_text(folder: StudyFolder, doc: dict[str, Any] | None = None) -> str:
    """The README block's body for ``folder``: its brief tables, or, with no bundle yet, the
    one line saying so."""
    doc = doc if doc is not None else _folder_doc(folder)
    if doc is None:
        return (f"*Not published yet: `lab study {_rel(folder.plan)} --publish` runs it and "
                "writes this block from the bundle.*\n")
    kernels = sorted({" ".join(str(x) for x in (c.get("package") or c.get("kernel_name"),
                                                 c.get("package_version")) if x)
                      for r in doc["runs"] for c in r["configs"].values()} - {""})
    clocks = sorted({str(r["timing"]) for r in doc["runs"]})
    modelled = [c["name"] for c in doc["report"].get("clocks") or [] if c.get("model")]
    if modelled:   # the cost plugin's counts: time in modelled cycles too
        clocks = [f"{', '.join(clocks)} and modelled cycles ({', '.join(modelled)})"]
    head = (f"*{'SIMULATED. ' if doc['simulated'] else ''}"
            f"Generated by `lab report {_rel(folder.path)}/` from `{_rel(folder.bundle)}`: "
            f"{'; '.join(kernels)}; clock {', '.join(clocks)}. Provenance and profiles: "
            f"[{_rel(folder.report)}]({_rel(folder.report)}).*\n")
    return head + "\n" + render(doc, "markdown", brief=True)


def rewrite_block(text: str, name: str, body: str) -> tuple[str, bool]:
    """``text`` with study ``name``'s block body replaced; (new text, whether it had one)."""
    begin, end = (MARKER.format(name=name, end=e) for e in ("begin", "end"))
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return text, False
    return pattern.sub(lambda _m: f"{begin}\n{body}{end}", text, count=1), True


def check_readme(readme: Path, analysis: Path) -> list[str]:
    """Every block of ``readme`` that differs from what its study's bundle gives, as
    "README.md line N: study NAME: expected ..., found ..." (empty when all match)."""
    text = readme.read_text()
    problems = []
    for m in _BLOCK.finditer(text):
        name, found = m.group(1), m.group(2)
        folder = StudyFolder(analysis / name)
        if not folder.plan.is_file():
            problems.append(f"{readme.name}: block {name!r} names no study folder "
                            f"{folder.path}")
            continue
        want = block_text(folder)
        if found == want:
            continue
        start = text.count("\n", 0, m.start(2)) + 1
        got_lines, want_lines = found.splitlines(), want.splitlines()
        for i in range(max(len(got_lines), len(want_lines))):
            g = got_lines[i] if i < len(got_lines) else "<nothing>"
            w = want_lines[i] if i < len(want_lines) else "<nothing>"
            if g != w:
                problems.append(f"{readme.name} line {start + i}: study {name}: the bundle "
                                f"{folder.bundle.name} gives {w!r}, the README has {g!r}")
                break
    return problems


def _commands(folder: StudyFolder) -> str:
    plan, path, bundle = _rel(folder.plan), _rel(folder.path), _rel(folder.bundle)
    return (f"    lab study {plan} --publish      # run, bundle, REPORT.md, README block\n"
            f"    lab report {path}/                # REPORT.md and the README block again\n"
            f"    lab report {bundle} --format text   # for a mail\n"
            f"    lab dashboard {bundle} -o dashboards/{folder.name}.html\n")


def folder_readme(folder: StudyFolder, doc: dict[str, Any] | None = None) -> str:
    """The study folder's README.md: what each file is, and the commands."""
    runs = ", ".join(r["run_id"] for r in doc["runs"]) if doc else "not published yet"
    return (f"# Study: {folder.name}\n\n"
            "Generated by `lab report`; do not edit (edit plan.toml and re-publish).\n\n"
            f"- `plan.toml`: what is run.\n- `{folder.bundle.name}`: the runs ({runs}).\n"
            "- `REPORT.md`: the report, rendered from the bundle alone.\n\n"
            + _commands(folder))


def _report_md(folder: StudyFolder, doc: dict[str, Any]) -> str:
    return render(doc, "markdown") + "\n## Regenerate, chart, mail\n\n" + _commands(folder)


def publish_folder(folder: StudyFolder, readme: Path | None = None) -> list[Path]:
    """Regenerate the folder's REPORT.md and README.md and the repository README's block for
    it, from the committed bundle; returns the files written. A README without this study's
    markers is left alone (where the table belongs is an editor's choice)."""
    doc = _folder_doc(folder)
    if doc is None:
        raise UsageError(f"{folder.path}: no {folder.bundle.name}; publish it with "
                         f"'lab study {folder.plan} --publish'")
    if doc["simulated"] and folder.path.resolve().is_relative_to(repo_root()):
        raise UsageError(f"{folder.bundle} holds SIMULATED runs: the repository publishes "
                         "only numbers measured on a guest kernel")
    written = [folder.report, folder.readme]
    folder.report.write_text(_report_md(folder, doc))
    folder.readme.write_text(folder_readme(folder, doc))
    readme = readme or repo_root() / "README.md"
    if readme.is_file():
        new, found = rewrite_block(readme.read_text(), folder.name, block_text(folder, doc))
        if found:
            readme.write_text(new)
            written.append(readme)
    return written

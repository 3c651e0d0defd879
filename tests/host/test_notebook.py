"""`lab report` and the study folders: reports from stored results only, mail-safe text, and
README blocks that must match their committed bundle."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_dashboard import study_run, write_profile
from typer.testing import CliRunner

from lab.cli import app
from lab.notebook import MARKER, StudyFolder, block_text, check_folder, check_readme
from lab.results import list_runs

runner = CliRunner()

PLAN = '''name = "demo"
description = "forkstorm on highpte, lowpte and ukva (sim: tests only)"
configs = ["highpte", "lowpte", "ukva"]
repeat = 2
backend = "sim"
gap = ["highpte", "lowpte"]

[[cell]]
workload = "forkstorm"
params = { procs = 100, touch = 16 }
'''


def assert_mail_safe(text: str) -> None:
    for n, line in enumerate(text.splitlines(), 1):
        assert len(line) < 80, f"line {n} has {len(line)} columns: {line!r}"
        assert "\t" not in line and "\x1b" not in line, f"line {n}: {line!r}"
        assert line.isascii(), f"line {n} is not ASCII: {line!r}"


def test_text_report_of_a_study_fits_a_mail(tmp_path: Path) -> None:
    run = study_run(tmp_path / "results")
    write_profile(run, n=50)
    res = runner.invoke(app, ["report", str(run.path), "--gap", "highpte,lowpte"])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert_mail_safe(text)
    # provenance: source version, .config hash, QEMU, clock, backend, lab commit
    for fact in ("6.1.176-1", "7.2.22", "clock icount", "backend ftrace", "3361f6cbae33"):
        assert fact in text, fact
    assert "highpte: kernel linux-image-6.1.0-50-686-pae 6.1.176-1" in text
    assert "Share of the highpte -> lowpte gap recovered" in text
    assert "3 repeats each" in text and re.search(r"  lowpte +0.00 .* -100.0%  <0.001", text)
    tasks = text[text.index("taskpile:"):]
    assert re.search(r"lowpte\s+.*\s64\s+max_tasks", tasks), tasks
    prof = text[text.index("Differential profile: lowpte - highpte"):]
    flat = " ".join(prof.split())
    assert "highpte 728 kernel ticks" in flat and "lowpte 663 kernel ticks" in flat
    assert "Holm-corrected over 50 rows" in flat
    rises = [int(m) for m in re.findall(r"^\s+([+-]\d+)\s", prof, re.M)]
    assert rises == sorted(rises, reverse=True) and rises[0] > 0 > rises[-1]
    assert "(20 rows)" in prof   # the quiet middle of 50 rows is left out


def test_markdown_and_json_of_the_same_run(tmp_path: Path) -> None:
    run = study_run(tmp_path / "results", workloads=("forkstorm", "taskpile"))
    out = tmp_path / "r.md"
    res = runner.invoke(app, ["report", run.run_id[:15], "--format", "markdown", "-o", str(out)])
    assert res.exit_code == 0, res.output
    md = out.read_text()
    assert md.startswith("# ukva-lab: study") and "| figure | config |" in md and "µs" in md
    js = runner.invoke(app, ["report", str(run.path), "--json"])
    assert js.exit_code == 0 and '"taskpile_reached"' in js.stdout
    bad = runner.invoke(app, ["report", str(run.path), "--format", "html"])
    assert bad.exit_code == 2


def publish_demo(tmp_path: Path) -> tuple[StudyFolder, Path]:
    folder = StudyFolder(tmp_path / "analysis" / "demo")
    folder.path.mkdir(parents=True)
    folder.plan.write_text(PLAN)
    readme = tmp_path / "README.md"
    readme.write_text("# r\n\nbefore\n\n" + MARKER.format(name="demo", end="begin") + "\nold\n"
                      + MARKER.format(name="demo", end="end") + "\n\nafter\n")
    res = runner.invoke(app, ["study", str(folder.path), "--publish", "--readme", str(readme)])
    assert res.exit_code == 0, res.output
    return folder, readme


def test_publish_then_the_readme_block_is_checked_against_the_bundle(tmp_path: Path) -> None:
    folder, readme = publish_demo(tmp_path)
    assert folder.bundle.is_file() and folder.report.is_file() and folder.readme.is_file()
    (run,) = list(list_runs())
    assert run.run_id in folder.readme.read_text()
    assert f"lab dashboard {folder.bundle}" in folder.readme.read_text()
    text = readme.read_text()
    assert "before" in text and "after" in text and "old" not in text
    assert "| forkstorm | ukva | highmem kmaps |" in text
    assert check_readme(readme, tmp_path / "analysis") == [] == check_folder(folder)
    # regenerating from the committed bundle alone gives the same files, byte for byte
    report = folder.report.read_text()
    for p in run.path.iterdir():
        p.unlink()
    run.path.rmdir()
    res = runner.invoke(app, ["report", str(folder.path), "--readme", str(readme)])
    assert res.exit_code == 0, res.output
    assert folder.report.read_text() == report and readme.read_text() == text
    text_report = runner.invoke(app, ["report", str(folder.path), "--format", "text"])
    assert text_report.exit_code == 0 and "SIMULATED" in text_report.stdout
    assert_mail_safe(text_report.stdout)
    # a README number that differs from the bundle: the study and the line are named
    line = next(ln for ln in text.splitlines() if ln.startswith("| forkstorm | ukva"))
    n = text.splitlines().index(line) + 1
    readme.write_text(text.replace(line, re.sub(r"\d+%", "99%", line, count=1)))
    (problem,) = check_readme(readme, tmp_path / "analysis")
    assert f"README.md line {n}: study demo" in problem and "99%" in problem
    folder.report.write_text(report.replace("highpte", "hipte", 1))
    (problem,) = check_folder(folder)
    assert "REPORT.md line" in problem and "study demo" in problem


def test_an_unpublished_study_says_so_and_nothing_else(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "analysis" / "later")
    folder.path.mkdir(parents=True)
    folder.plan.write_text(PLAN)
    body = block_text(folder)
    assert body.startswith("*Not published yet") and not re.search(r"\d%", body)
    readme = tmp_path / "README.md"
    begin, end = (MARKER.format(name="later", end=e) for e in ("begin", "end"))
    readme.write_text(f"{begin}\n{body}{end}\n")
    assert check_readme(readme, tmp_path / "analysis") == []
    readme.write_text(f"{begin}\n| x | 85 % |\n{end}\n")
    (problem,) = check_readme(readme, tmp_path / "analysis")
    assert "line 2: study later" in problem
    res = runner.invoke(app, ["report", str(folder.path)])
    assert res.exit_code == 2 and "--publish" in res.output


def test_simulated_numbers_are_never_published_in_the_repository() -> None:
    plan = Path(__file__).parents[2] / "analysis" / "smoke"
    res = runner.invoke(app, ["study", str(plan), "--backend", "sim", "--publish"])
    assert res.exit_code == 2 and "SIMULATED" in res.output
    assert not (plan / "smoke.labbundle.tar.gz").exists()
    assert list(list_runs()) == []


@pytest.mark.parametrize("name", ["smoke", "highpte-cost", "highpte-cost-smp", "ukva"])
def test_shipped_studies_are_folders(name: str) -> None:
    folder = StudyFolder(Path(__file__).parents[2] / "analysis" / name)
    assert folder.plan.is_file()


@pytest.mark.parametrize("name", ["smoke", "highpte-cost", "highpte-cost-smp", "ukva"])
def test_shipped_study_folders_say_how_to_publish_and_chart(name: str) -> None:
    from lab.notebook import folder_readme

    folder = StudyFolder(Path(__file__).parents[2] / "analysis" / name)
    if not folder.bundle.is_file():   # published folders are checked through their bundle
        assert folder.readme.read_text() == folder_readme(folder)
    text = folder.readme.read_text()
    assert f"lab study analysis/{name}/plan.toml --publish" in text
    assert f"lab dashboard analysis/{name}/{name}.labbundle.tar.gz" in text


def test_a_profile_run_reports_its_ticks_and_marks(tmp_path: Path) -> None:
    from lab.results import new_run

    run = new_run("profile-forkstorm", {"kind": "profile", "backend": "profile",
                                        "timing": "icount", "config_names": ["highpte", "ukva"]},
                  root=tmp_path / "results")
    rows = [{"symbol": "pmd_alloc_ukva", "a_ticks": 0, "b_ticks": 160},
            {"symbol": "copy_page_range", "a_ticks": 1300, "b_ticks": 1290},
            {"symbol": "do_wp_page", "a_ticks": 9, "b_ticks": 2},
            {"symbol": "__kmap_local_pfn_prot", "a_ticks": 700, "b_ticks": 90}]
    (run.path / "profile.json").write_text(json.dumps({
        "configs": ["highpte", "ukva"], "workload": "forkstorm", "params": {"procs": 1000},
        "totals": {"highpte": {"ticks": 10_000, "ops": 12_000, "runs": 12},
                   "ukva": {"ticks": 9_600, "ops": 12_000, "runs": 12}},
        "rows": [{**r, "delta": r["b_ticks"] - r["a_ticks"]} for r in rows]}))
    res = runner.invoke(app, ["report", run.run_id])
    assert res.exit_code == 0, res.output
    assert_mail_safe(res.stdout)
    flat = " ".join(res.stdout.split())
    assert "highpte 10,000 kernel ticks over 12 runs" in flat
    lines = {ln.split()[-1]: ln for ln in res.stdout.splitlines()
             if re.match(r"\s+[+-]\d", ln)}
    assert "*" in lines["pmd_alloc_ukva"] and "*" in lines["__kmap_local_pfn_prot"]
    assert "*" not in lines["do_wp_page"] and "*" not in lines["copy_page_range"]
    order = [s for s in lines if s in {r["symbol"] for r in rows}]
    assert order == ["pmd_alloc_ukva", "do_wp_page", "copy_page_range",
                     "__kmap_local_pfn_prot"]   # largest rise first, largest fall last


def test_profile_options_are_checked_before_anything_boots() -> None:
    res = runner.invoke(app, ["profile", "--ticks", "0"])
    assert res.exit_code == 2 and "--ticks" in res.output

"""Result bundles: round trip, determinism, hostile files refused, import never overwrites, merge.

Hostile bundles are crafted here with tarfile directly; each must be refused with one clear line
and leave results/ exactly as it was (no file changed, nothing added, no temp dir left).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_dashboard import study_run, write_profile
from typer.testing import CliRunner

from lab.bundle import (
    DEFAULT_LIMITS,
    SUFFIX,
    BundleError,
    Limits,
    export_bundle,
    import_bundle,
    merge_bundles,
    verify_bundle,
)
from lab.cli import app
from lab.dashboard import render_dashboard
from lab.errors import UsageError
from lab.paths import results_dir
from lab.results import RunDir, list_runs, open_run

runner = CliRunner()


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (dotfiles too) with its type and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def src(tmp_path: Path) -> list[RunDir]:
    """Two runs on another machine's results: console logs, a kernel .config, a profile."""
    root = tmp_path / "elsewhere"
    a = study_run(root, workloads=("forkstorm", "taskpile"), host="lab-a")
    (a.path / "console-highpte.log").write_text("Linux version 6.1.0-50-686-pae\nready\n")
    (a.path / ".config").write_text("CONFIG_HIGHPTE=y\nCONFIG_X86_PAE=y\n")
    (a.path / ".manifest.json.ab12cd34").write_text("temp file of write_json_atomic")
    b = study_run(root, configs=("highpte", "lowpte"), workloads=("forkstorm",), host="lab-a",
                  seed=3)
    write_profile(b)
    return [a, b]


def test_round_trip_gives_identical_runs(src: list[RunDir], tmp_path: Path) -> None:
    out = tmp_path / f"x{SUFFIX}"
    info = export_bundle(src, out)
    assert info.run_ids == sorted(r.run_id for r in src)
    verified = verify_bundle(out)
    assert verified.sha256 == info.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    res = import_bundle(out)
    assert res.root == results_dir() and sorted(res.imported) == info.run_ids
    for run in src:
        got = open_run(run.run_id)
        assert got.path.parent == results_dir()
        assert got.records() == run.records() and got.manifest() == run.manifest()
        carried = {p.name for p in run.path.iterdir()} - {".manifest.json.ab12cd34"}
        assert {p.name for p in got.path.iterdir()} == carried
        for name in carried:
            assert (got.path / name).read_bytes() == (run.path / name).read_bytes()
    # bundle.json describes each run: where it ran, on which kernel, with what
    index = json.loads(tarfile.open(out).extractfile("bundle.json").read())  # type: ignore
    assert index["format"] == "ukva-lab-bundle" and index["schema"] == 1
    first = next(r for r in index["runs"] if r["run_id"] == src[0].run_id)
    assert first["host"]["hostname"] == "lab-a" and first["records"] == 18
    assert first["kernels"]["highpte"]["release"] == "6.1.0-50-686-pae"
    assert first["kernels"]["highpte"]["config_sha256"]
    assert index["sources"] == [{"bundle": None, "sha256": None, "hosts": ["lab-a"],
                                 "runs": info.run_ids}]
    assert {m["path"] for m in index["members"]} >= {
        f"runs/{src[0].run_id}/.config", f"runs/{src[1].run_id}/profile.json"}
    # imported runs sort by when they ran, not by when they were imported
    started = datetime(2026, 11, 25, 22, 58, 29, tzinfo=UTC).timestamp()
    assert os.stat(results_dir() / src[0].run_id / "manifest.json").st_mtime == started


def test_export_is_deterministic(src: list[RunDir], tmp_path: Path) -> None:
    a, b = tmp_path / "a.labbundle.tar.gz", tmp_path / "b.labbundle.tar.gz"
    export_bundle(src, a)
    for run in src:   # touching files (mtime, mode) must not change the bundle
        for p in run.path.iterdir():
            os.utime(p, (1, 1))
            p.chmod(0o600)
    export_bundle(list(reversed(src)), b)
    assert a.read_bytes() == b.read_bytes()
    raw = a.read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08   # gzip: mtime 0, no file name
    with tarfile.open(a) as tar:
        members = tar.getmembers()
    assert [m.name for m in members][0] == "bundle.json"
    assert [m.name for m in members][1:] == sorted(m.name for m in members[1:])
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.type) for m in members} == {
        (0, 0, 0, "", "", 0o644, tarfile.REGTYPE)}


# ---------------------------------------------------------------------------------------------
# hostile bundles


def craft(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def good_members(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(bundle) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes | None = b"x",
           **attrs: int) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, link
    for k, v in attrs.items():
        setattr(ti, k, v)
    return ti, (data if kind == tarfile.REGTYPE else None)


def hostile(case: str, good: Path, tmp_path: Path) -> Path:
    members = good_members(good)
    run_id = json.loads(members[0][1])["runs"][0]["run_id"]  # type: ignore[arg-type]
    inside = f"runs/{run_id}"
    if case == "tampered":
        i = next(i for i, (m, _) in enumerate(members) if m.name.endswith("runs.jsonl"))
        data = members[i][1].replace(b'"repeat": 0', b'"repeat": 7', 1)  # type: ignore
        members[i] = (members[i][0], data)
    elif case == "traversal":
        members.append(member("../x"))
    elif case == "traversal-inside":
        members.append(member(f"{inside}/../../x"))
    elif case == "absolute":
        members.append(member(str(tmp_path / "abs-target")))
    elif case == "symlink":
        members.append(member(f"{inside}/evil", tarfile.SYMTYPE, "/etc/passwd"))
    elif case == "hardlink":
        members.append(member(f"{inside}/evil", tarfile.LNKTYPE, f"{inside}/manifest.json"))
    elif case == "chardev":
        members.append(member(f"{inside}/null", tarfile.CHRTYPE, devmajor=1, devminor=3))
    elif case == "blockdev":
        members.append(member(f"{inside}/sda", tarfile.BLKTYPE, devmajor=8, devminor=0))
    elif case == "fifo":
        members.append(member(f"{inside}/pipe", tarfile.FIFOTYPE))
    elif case == "directory":
        members.append(member(f"{inside}/sub", tarfile.DIRTYPE))
    elif case == "duplicate":
        members.append(member(f"{inside}/manifest.json", data=b"{}"))
    elif case == "stray":
        members.append(member("README"))
    elif case == "unlisted":
        members.append(member(f"{inside}/extra.log"))
    return craft(tmp_path / f"{case}{SUFFIX}", members)


HOSTILE = {
    "tampered": "fails its checksum",
    "traversal": "'..' path component (path traversal)",
    "traversal-inside": "'..' path component (path traversal)",
    "absolute": "has an absolute path",
    "symlink": "is a symbolic link (to '/etc/passwd')",
    "hardlink": "is a hard link",
    "chardev": "is a character device file",
    "blockdev": "is a block device file",
    "fifo": "is a FIFO",
    "directory": "is a directory",
    "duplicate": "appears twice",
    "stray": "is not bundle.json or runs/<run-id>/<file>",
    "unlisted": "is not listed in bundle.json",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bundle_is_refused_and_results_untouched(case: str, src: list[RunDir],
                                                         tmp_path: Path) -> None:
    good = export_bundle(src[:1], tmp_path / f"good{SUFFIX}").path
    local = study_run(results_dir(), workloads=("forkstorm",), host="here")
    before = snapshot(results_dir())
    bad = hostile(case, good, tmp_path)
    with pytest.raises(BundleError, match="refused|fails its checksum|not listed") as e:
        import_bundle(bad)
    assert HOSTILE[case] in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(BundleError, match=HOSTILE[case].replace("(", r"\(").replace(")", r"\)")):
        verify_bundle(bad)
    res = runner.invoke(app, ["bundle", "import", str(bad)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and HOSTILE[case] in lines[0]
    assert snapshot(results_dir()) == before and [r.run_id for r in list_runs()] == [local.run_id]
    assert not (tmp_path / "x").exists() and not (tmp_path / "abs-target").exists()
    assert not (results_dir().parent / "x").exists()


@pytest.mark.parametrize("case", ["traversal", "absolute"])
def test_data_filter_and_disk_check_hold_even_without_the_header_checks(
        case: str, src: list[RunDir], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: with the explicit checks disabled, tarfile's ``data`` filter (for
    ``..``) and the walk of the extracted tree (for a stripped absolute path) still refuse."""
    import lab.bundle.reading as lb

    good = export_bundle(src[:1], tmp_path / f"good{SUFFIX}").path
    bad = hostile(case, good, tmp_path)
    name = good_members(bad)[-1][0].name
    real_index = lb._check_index

    def lax_member(m: tarfile.TarInfo, label: str, seen: set[str], total: int,
                   limits: Limits) -> int:
        return total + m.size

    def lax_index(label: str, hashes: dict, keep: dict) -> dict:
        hashes = {k: v for k, v in hashes.items() if k != name}
        index = real_index(label, hashes, keep)
        index["members"].append({"path": name, "sha256": "", "size": 1})
        return index

    monkeypatch.setattr(lb, "_check_member", lax_member)
    monkeypatch.setattr(lb, "_check_index", lax_index)
    before = snapshot(results_dir())
    with pytest.raises(BundleError, match="data filter|unexpected"):
        import_bundle(bad)
    assert snapshot(results_dir()) == before
    assert not (tmp_path / "abs-target").exists()


def test_size_caps(src: list[RunDir], tmp_path: Path) -> None:
    good = export_bundle(src, tmp_path / f"good{SUFFIX}").path
    with pytest.raises(BundleError, match="over the per-member cap of 1000"):
        verify_bundle(good, Limits(member_bytes=1000))
    with pytest.raises(BundleError, match="members total over the cap of 20000 bytes"):
        verify_bundle(good, Limits(total_bytes=20_000))
    with pytest.raises(BundleError, match="more than 3 members"):
        verify_bundle(good, Limits(members=3))
    # a header claiming 300 MiB is refused from the header alone, before any data is read
    huge = tarfile.TarInfo(f"runs/{src[0].run_id}/console-highpte.log")
    huge.size = 300 * 2**20
    bomb = tmp_path / f"bomb{SUFFIX}"
    with gzip.open(bomb, "wb") as gz:
        gz.write(huge.tobuf(tarfile.PAX_FORMAT) + b"\0" * 4096)
    cap = DEFAULT_LIMITS.member_bytes
    with pytest.raises(BundleError, match=f"over the per-member cap of {cap}"):
        import_bundle(bomb)
    assert not list(list_runs())


def test_not_a_bundle(tmp_path: Path) -> None:
    junk = tmp_path / f"junk{SUFFIX}"
    junk.write_bytes(b"not gzip at all")
    res = runner.invoke(app, ["bundle", "verify", str(junk)])
    assert res.exit_code == 2 and "not a readable lab bundle" in res.output
    plain = craft(tmp_path / f"plain{SUFFIX}", [member("bundle.json", data=b'{"format": "zip"}')])
    with pytest.raises(BundleError, match="not a lab bundle"):
        verify_bundle(plain)
    res = runner.invoke(app, ["bundle", "verify", str(tmp_path / "missing.tar.gz")])
    assert res.exit_code == 2 and "cannot read bundle" in res.output
    newer = craft(tmp_path / f"newer{SUFFIX}", [member("bundle.json", data=json.dumps(
        {"format": "ukva-lab-bundle", "schema": 99}).encode())])
    with pytest.raises(BundleError, match="schema 99 is newer"):
        verify_bundle(newer)


def test_bad_record_schema_is_caught_by_verify(src: list[RunDir], tmp_path: Path) -> None:
    good = export_bundle(src[:1], tmp_path / f"good{SUFFIX}").path
    members = good_members(good)
    index = json.loads(members[0][1])  # type: ignore[arg-type]
    i = next(i for i, (m, _) in enumerate(members) if m.name.endswith("runs.jsonl"))
    data = b'{"schema": 1, "run_id": "someone-else", "config": "a", "workload": "w", ' \
           b'"counts": {}}\n' + members[i][1]  # type: ignore[operator]
    members[i] = (members[i][0], data)
    entry = next(e for e in index["members"] if e["path"] == members[i][0].name)
    entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    members[0] = (members[0][0], json.dumps(index).encode())
    bad = craft(tmp_path / f"bad{SUFFIX}", members)
    with pytest.raises(BundleError, match="line 1 belongs to run 'someone-else'"):
        verify_bundle(bad)


# ---------------------------------------------------------------------------------------------
# never overwrite


def test_import_twice_is_a_no_op(src: list[RunDir], tmp_path: Path) -> None:
    out = export_bundle(src, tmp_path / f"x{SUFFIX}").path
    res = runner.invoke(app, ["bundle", "import", str(out)])
    assert res.exit_code == 0 and "2 imported, 0 already present" in res.output
    before = snapshot(results_dir())
    res = runner.invoke(app, ["bundle", "import", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["imported"] == [] and sorted(data["skipped"]) == sorted(r.run_id for r in src)
    assert snapshot(results_dir()) == before
    human = runner.invoke(app, ["bundle", "import", str(out)])
    assert f"skipped {src[0].run_id}: already in" in human.output and "identical" in human.output


def test_same_id_different_content_refuses_everything(src: list[RunDir], tmp_path: Path) -> None:
    out = export_bundle(src, tmp_path / f"x{SUFFIX}").path
    import_bundle(out)
    mine = results_dir() / src[0].run_id / "runs.jsonl"
    mine.write_text(mine.read_text().replace('"repeat": 0', '"repeat": 9', 1))
    (results_dir() / src[1].run_id / "profile.json").unlink()
    os.rename(results_dir() / src[1].run_id, tmp_path / "moved-away")
    before = snapshot(results_dir())
    with pytest.raises(BundleError, match=f"results/{src[0].run_id}/runs.jsonl differs") as e:
        import_bundle(out)
    assert "nothing imported" in str(e.value)
    assert snapshot(results_dir()) == before   # src[1] was not imported either: all or nothing


# ---------------------------------------------------------------------------------------------
# merge: several machines, one comparison


def test_merge_bundles_from_two_kernels_gives_one_dashboard(tmp_path: Path) -> None:
    a = study_run(tmp_path / "machine-a", configs=("highpte", "lowpte"),
                  workloads=("forkstorm", "taskpile"), host="lab-a", release="6.1.0-50-686-pae")
    b = study_run(tmp_path / "machine-b", configs=("highpte", "lowpte"),
                  workloads=("forkstorm", "taskpile"), host="lab-b", release="6.1.0-41-686-pae",
                  seed=5)
    ba = export_bundle([a], tmp_path / f"a{SUFFIX}")
    bb = export_bundle([b], tmp_path / f"b{SUFFIX}")
    res = runner.invoke(app, ["bundle", "merge", str(ba.path), str(bb.path),
                              "-o", str(tmp_path / f"ab{SUFFIX}"), "--json"])
    assert res.exit_code == 0, res.output
    merged = verify_bundle(tmp_path / f"ab{SUFFIX}")
    assert merged.run_ids == sorted([a.run_id, b.run_id])
    assert merged.index["sources"] == [
        {"bundle": f"a{SUFFIX}", "sha256": ba.sha256, "hosts": ["lab-a"], "runs": [a.run_id]},
        {"bundle": f"b{SUFFIX}", "sha256": bb.sha256, "hosts": ["lab-b"], "runs": [b.run_id]}]
    kernels = {r["host"]["hostname"]: r["kernels"]["highpte"]["release"]
               for r in merged.index["runs"]}
    assert kernels == {"lab-a": "6.1.0-50-686-pae", "lab-b": "6.1.0-41-686-pae"}
    # a bundle can be looked at without importing it ...
    out = tmp_path / "ab.html"
    res = runner.invoke(app, ["dashboard", str(merged.path), "--baseline", "lowpte",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert not list(list_runs())
    # ... or imported and drawn from results/
    import_bundle(merged.path)
    page = render_dashboard([open_run(a.run_id), open_run(b.run_id)], tmp_path / "d.html",
                            baseline="lowpte").read_text()
    for page_ in (page, out.read_text()):
        assert "6.1.0-50-686-pae" in page_ and "6.1.0-41-686-pae" in page_
        assert "<th>highpte @ lab-a</th>" in page_ and "<th>highpte @ lab-b</th>" in page_
        assert "2 runs from 2 machines: lab-a, lab-b" in page_
        assert '<h2 id="taskpile">' in page_


def test_merge_keeps_nested_sources_and_refuses_conflicts(tmp_path: Path) -> None:
    a = study_run(tmp_path / "a", workloads=("forkstorm",), host="lab-a")
    b = study_run(tmp_path / "b", workloads=("forkstorm",), host="lab-b")
    c = study_run(tmp_path / "c", workloads=("forkstorm",), host="lab-c")
    ba, bb, bc = (export_bundle([r], tmp_path / f"{n}{SUFFIX}") for n, r in
                  (("a", a), ("b", b), ("c", c)))
    ab = merge_bundles([ba.path, bb.path], tmp_path / f"ab{SUFFIX}")
    # the same run twice (identical) is kept once; provenance of earlier merges is kept
    abc = merge_bundles([ab.path, bc.path, ba.path], tmp_path / f"abc{SUFFIX}")
    assert len(abc.run_ids) == 3
    assert [s["bundle"] for s in abc.index["sources"]] == [f"a{SUFFIX}", f"b{SUFFIX}",
                                                          f"c{SUFFIX}"]
    a.append_record({**a.records()[0], "repeat": 99})
    a2 = export_bundle([a], tmp_path / f"a2{SUFFIX}")
    with pytest.raises(BundleError, match=f"run {a.run_id} is in a{SUFFIX} and a2{SUFFIX} with "
                                          "different content"):
        merge_bundles([ba.path, a2.path], tmp_path / f"bad{SUFFIX}")
    assert not (tmp_path / f"bad{SUFFIX}").exists()
    with pytest.raises(UsageError, match="two or more"):
        merge_bundles([ba.path], tmp_path / f"one{SUFFIX}")


# ---------------------------------------------------------------------------------------------
# CLI


@pytest.mark.parametrize("cmd", [["bundle"], ["bundle", "export"], ["bundle", "verify"],
                                 ["bundle", "import"], ["bundle", "merge"]])
def test_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_cli_export_and_verify(src: list[RunDir], tmp_path: Path) -> None:
    out = tmp_path / f"cli{SUFFIX}"
    res = runner.invoke(app, ["bundle", "export", str(src[0].path), str(src[1].path),
                              str(src[0].path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "bundle written:" in res.output and "host lab-a" in res.output
    res = runner.invoke(app, ["bundle", "verify", str(out), "--json"])
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(data["runs"]) == 2
    res = runner.invoke(app, ["bundle", "export", "no-such-run", "-o", str(out)])
    assert res.exit_code == 2 and "no run" in res.output
    (src[0].path / "link").symlink_to("/etc/passwd")
    res = runner.invoke(app, ["bundle", "export", str(src[0].path), "-o", str(out)])
    assert res.exit_code == 2 and "link is a symbolic link" in res.output


@pytest.mark.parametrize("content", [b"hello, not a bundle\n", b""])
def test_a_file_that_is_not_a_bundle_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    """Naming the wrong file exits 2 like any bad argument; nothing is imported."""
    from typer.testing import CliRunner

    from lab.cli import app

    f = tmp_path / "notes.txt"
    f.write_bytes(content)
    for verb in ("import", "verify"):
        res = CliRunner().invoke(app, ["bundle", verb, str(f)])
        assert res.exit_code == 2, (verb, res.output)
        assert "not a readable lab bundle" in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output

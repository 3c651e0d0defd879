"""Where each record came from: the provenance panel, and one label per origin when a
configuration was measured on several hosts or kernels (pooling those would blend them).
"""

from __future__ import annotations

import json
from typing import Any

from ..results import RunDir
from .fmt import cell_lines, esc, fmt, table

__all__ = ["split_origins", "provenance_table"]


def _kernel(v: Any, name: Any = None) -> list[str]:
    """A kernel description, one line each: name, package and version, release, .config hash."""
    lines = [fmt(name)] if name else []
    if isinstance(v, dict):
        lines += [" ".join(fmt(v[k]) for k in ("package", "version", "package_version")
                           if k in v),
                  f"release {fmt(v['release'])}" if v.get("release") else "",
                  f".config sha256 {str(v['config_sha256'])[:12]}…"
                  if v.get("config_sha256") else ""]
        if not any(lines):
            lines = [fmt(v)]
    elif v:
        lines.append(fmt(v))
    return [x[:120] for x in lines if x] or ["—"]


def _config_entry(m: dict[str, Any], config: str) -> dict[str, Any]:
    per = m.get("configs")
    c = per.get(config) if isinstance(per, dict) else None
    return c if isinstance(c, dict) else {}


def _origin(m: dict[str, Any], config: str) -> tuple[str, str, str]:
    """(host, kernel identity, short kernel label) of one configuration in one run."""
    host = m.get("host")
    hostname = fmt(host.get("hostname")) if isinstance(host, dict) else "—"
    c = _config_entry(m, config)
    k = c.get("kernel", m.get("kernel"))
    if isinstance(k, dict):
        kid = str(k.get("bzimage_sha256") or json.dumps(k, sort_keys=True))
        label = str(k.get("release") or k.get("package_version") or c.get("kernel_name") or kid)
    else:
        kid = label = fmt(k if k is not None else c.get("kernel_name"))
    return hostname, kid, label


def split_origins(records: list[dict[str, Any]],
                  manifests: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Give a configuration measured on several hosts or kernels one label per origin."""
    origins: dict[str, dict[tuple[str, str, str], None]] = {}
    for r in records:
        o = _origin(manifests.get(str(r.get("run_id")), {}), str(r.get("config")))
        origins.setdefault(str(r.get("config")), {})[o] = None
    rename: dict[tuple[str, tuple[str, str, str]], str] = {}
    notes = []
    for config, found in sorted(origins.items()):
        if len(found) < 2:
            continue
        keys = list(found)
        hosts = {o[0] for o in keys}
        if len({(o[0], o[1]) for o in keys}) == len(hosts):
            tags = [o[0] for o in keys]                        # one kernel per host
        elif len(hosts) == 1 and len({o[2] for o in keys}) == len(keys):
            tags = [o[2] for o in keys]                        # one host, several kernels
        else:
            tags = [f"{o[0]}, {o[2]}" for o in keys]
        if len(set(tags)) < len(tags):
            tags = [f"{t} #{i + 1}" for i, t in enumerate(tags)]
        for o, tag in zip(keys, tags, strict=True):
            rename[(config, o)] = f"{config} @ {tag}"
        notes.append(f"configuration {config!r} was measured on {len(keys)} different "
                     f"machines or kernels; they are shown apart: "
                     f"{', '.join(sorted(rename[(config, o)] for o in keys))}")
    if not rename:
        return records, notes
    out = []
    for r in records:
        o = _origin(manifests.get(str(r.get("run_id")), {}), str(r.get("config")))
        label = rename.get((str(r.get("config")), o))
        out.append({**r, "config": label, "config_name": r.get("config")} if label else r)
    return out, notes


def provenance_table(runs: list[RunDir], manifests: dict[str, dict[str, Any]],
                     records: list[dict[str, Any]]) -> str:
    """One row per run and configuration, from manifest.json; missing keys show as "—"."""
    head = ("run", "configuration", "workload", "records", "source", "machine", "kernel",
            "kernel command line", "QEMU", "lab")
    body = []
    for run in runs:
        m = manifests.get(run.run_id, {})
        # lab.trace writes configs={name: {kernel, cmdline, timing, ...}}; older or hand-made
        # manifests may have config/configs/config_names at the top level
        per_cfg = m.get("configs") if isinstance(m.get("configs"), dict) else None
        entries = list(per_cfg.items()) if per_cfg else [
            (fmt(m.get("configs", m.get("config_names", m.get("config")))), m)]
        host: dict[str, Any] = m["host"] if isinstance(m.get("host"), dict) else {}
        mem = host.get("mem_bytes")
        machine = cell_lines(fmt(host.get("hostname")), fmt(host.get("platform")),
                             " ".join(x for x in (
                                 f"{host['cpus']} CPUs" if host.get("cpus") else "",
                                 f"{mem / 2**30:.0f} GiB" if isinstance(mem, int | float) else "")
                                 if x))
        lab = cell_lines(fmt(m.get("lab_version")), fmt(m.get("git_commit"))[:20])
        for name, c in entries:
            c = c if isinstance(c, dict) else {}
            recs = [r for r in records if r.get("run_id") == run.run_id
                    and (per_cfg is None or r.get("config_name", r.get("config")) == name)]
            shown = sorted({str(r.get("config")) for r in recs}) or [str(name)]
            sim = c.get("simulated", m.get("simulated"))
            if sim is None and recs:
                sim = any(bool(r.get("simulated")) for r in recs)
            source = cell_lines("—" if sim is None else "SIMULATED" if sim else "real guest",
                                fmt(m.get("backend")), fmt(c.get("timing", m.get("timing"))))
            argv = c.get("qemu_argv")
            qemu = cell_lines(fmt(c.get("qemu_version")), fmt(c.get("accel")))
            if isinstance(argv, list):
                qemu += (f"<details><summary>argv</summary><code>"
                         f"{esc(' '.join(str(a) for a in argv))}</code></details>")
            wl = sorted({str(r.get("workload")) for r in recs}) or m.get("workloads") or [
                m.get("workload")]
            cells = (esc(run.run_id), esc(", ".join(shown)), esc(", ".join(map(fmt, wl))),
                     esc(str(len(recs))), source, machine,
                     cell_lines(*_kernel(c.get("kernel", m.get("kernel")), c.get("kernel_name"))),
                     esc(fmt(c.get("cmdline", m.get("cmdline")))), qemu, lab)
            body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    hosts = sorted({fmt(m.get("host", {}).get("hostname")) for m in manifests.values()
                    if isinstance(m.get("host"), dict)})
    summary = (f"<p class='note'>{len(runs)} run{'s' * (len(runs) != 1)}"
               + (f" from {len(hosts)} machine{'s' * (len(hosts) != 1)}: {esc(', '.join(hosts))}"
                  if hosts else "") + ".</p>")
    return summary + table(head, body, "prov")

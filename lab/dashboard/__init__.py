"""Render recorded runs into one self-contained offline HTML dashboard.

Why one file with plotly.js embedded: dashboards are attached to reviews and opened on machines
without network access, and must show the same thing years later. Everything shown comes from
stored JSON (manifest.json, runs.jsonl, profile.json) through :func:`lab.report.build_report`;
a model's output is marked SIMULATED in a banner and in every chart title, and absent counters
read "absent", never 0.

Sections: provenance (machine, kernel, boot, QEMU, lab per run and configuration); per
workload a headline table (per-unit mean ± CI half-width, Δ and Welch's p vs ``baseline``)
and one grid of bar charts (the counters probes.toml marks ``chart``, guest time, meminfo
change); a taskpile lowmem curve when taskpile records carry ``report.samples``; a
differential profile table for each run directory holding ``profile.json``.

Modules along those seams: provenance (where each record came from), tables, charts, page
(the sections in order, one file), fmt (formatting they share). None computes a statistic.

Runs merged from several machines may use one configuration name on different kernels or
hosts. Pooling those into one mean would blend different things, so such a configuration is
split into ``NAME @ host`` (or ``NAME @ kernel release``) columns, said in a note. Example::

    render_dashboard([open_run("20261125-forkstorm")], Path("dashboards/"), baseline="lowpte")
"""

from __future__ import annotations

from .fmt import KEY_COUNTERS, PROFILE_ROWS, SIMULATED_SUFFIX
from .page import render_dashboard

__all__ = ["render_dashboard", "KEY_COUNTERS", "SIMULATED_SUFFIX", "PROFILE_ROWS"]

"""The sim backend stays out of every test that claims to test the guest (issue 15): a guest
test that runs `lab trace` or `lab study` must pin a guest backend (``--backend ftrace`` or
``ebpf``), or ``auto`` would
quietly answer from the model on a host where no guest boots, and the test would pass on
SIMULATED numbers."""

from __future__ import annotations

import re
from pathlib import Path

GUEST_TESTS = Path(__file__).parents[1] / "guest"


def test_every_guest_trace_and_study_pins_the_ftrace_backend() -> None:
    calls = 0
    unpinned = []
    for path in sorted(GUEST_TESTS.glob("*.py")):
        text = path.read_text()
        for m in re.finditer(r'"(trace|study)",', text):
            calls += 1
            # the command's arguments follow within a few lines (one per line at most)
            args = text[m.start():m.start() + 400]
            if '"ftrace"' not in args and '"ebpf"' not in args:
                line = text.count("\n", 0, m.start()) + 1
                unpinned.append(f"{path.name}:{line}")
    assert calls >= 5
    assert not unpinned, f"guest tests that let auto pick the backend: {unpinned}"

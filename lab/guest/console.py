"""Recognise kernel failures in the guest's console log.

The console (ttyS0) is appended to a file for every boot; these patterns decide whether the
guest is lost (panic), damaged (oops, BUG) or complaining (WARNING, lockdep, stalls, soft
lockups). They
match the exact headers the 6.1 kernel prints; see the captured logs in tests/data/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ConsoleEvent", "scan_console", "first_fatal", "read_console", "FATAL_KINDS"]

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("panic", re.compile(r"Kernel panic - not syncing: .*")),
    ("oops", re.compile(r"\bOops: .*")),
    # A CPU that did not schedule for 20 s. The kernel would carry on, but every one seen
    # under TCG was a vCPU waiting for ever on an IPI the other never answered: fatal, and
    # its own kind so that `lab trace`/`study` can boot again once (before "bug": same "BUG:").
    ("soft-lockup", re.compile(r"BUG: soft lockup - CPU#\d+ stuck for \d+s!.*")),
    ("bug", re.compile(r"\bBUG: .*|kernel BUG at .*")),
    ("general-protection", re.compile(r"general protection fault.*")),
    (
        "lockdep",
        re.compile(
            r"WARNING: (possible circular locking dependency|possible recursive locking"
            r"|inconsistent lock state).*"
        ),
    ),
    ("warning", re.compile(r"WARNING: CPU: \d+ PID: \d+ at .*")),
    ("hung-task", re.compile(r"INFO: task .* blocked for more than \d+ seconds.*")),
    ("rcu-stall", re.compile(r"rcu: INFO: .* detected stalls.*")),
    ("oom", re.compile(r"Out of memory: Killed process .*")),
]

#: Events after which the guest cannot be trusted to go on.
FATAL_KINDS = frozenset({"panic", "oops", "bug", "general-protection", "soft-lockup"})


@dataclass(frozen=True)
class ConsoleEvent:
    """One recognised line: its kind, its 1-based line number and the text."""

    kind: str
    lineno: int
    text: str


_TIMESTAMP = re.compile(r"^\s*\[\s*\d+\.\d+\]\s*")


def scan_console(text: str) -> list[ConsoleEvent]:
    """Every recognised event in ``text``, in order (one per line, most specific kind)."""
    events = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = _TIMESTAMP.sub("", raw).rstrip("\r")
        for kind, pat in _PATTERNS:
            m = pat.search(line)
            if m:
                events.append(ConsoleEvent(kind, n, m.group(0).strip()))
                break
    return events


def first_fatal(events: list[ConsoleEvent]) -> ConsoleEvent | None:
    """The first event that means the guest is lost or damaged."""
    return next((e for e in events if e.kind in FATAL_KINDS), None)


def read_console(path: Path, offset: int = 0) -> str:
    """The console log from byte ``offset`` on (bytes decoded leniently)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""

"""Differential kernel profiles in the style of the 2003 UKVA post: ticks per symbol, B − A.

The guest boots with ``profile=2`` (the kernel's readprofile sampler: one counter per 4 bytes
of kernel text, bumped on every timer tick that lands there). After resetting /proc/profile
the workload runs; the buffer is read back gzip'd and symbolised with the guest's own
/proc/kallsyms. Why kallsyms and not System.map: Debian's image package ships a placeholder
System.map, and kallsyms already carries any KASLR offset.

/proc/profile layout (kernel/profile.c, read_profile): one ``unsigned int`` sample step
(1 << prof_shift) then prof_len counters; counter i covers [_stext + i*step, +step).

Only parsing and analysis live here (pure, testable on captured files); booting guests to
collect profiles is lab/profile_run.py, beside the trace driver.

Why a significance mark: a few hundred kernel ticks per side spread over hundreds of symbols
leave most symbols with a handful of ticks, so a top row of "+6" is usually chance.
:func:`annotate` marks each row whose two tick counts differ by more than chance (a binomial
split test on the row, :func:`lab.stats.split_test`, Holm-corrected for the number of rows),
and says how many ticks each side rests on.
"""

from __future__ import annotations

import bisect
import gzip
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .errors import LabError

__all__ = ["RawProfile", "parse_profile", "parse_kallsyms_text", "symbolize", "diff_profiles",
           "PROFILE_ARG", "IDLE_SYMBOLS", "collect_script", "decode_gz", "annotate", "ALPHA",
           "kernel_ticks"]

#: Family-wise error rate of the significance marks (Holm over every row of a diff).
ALPHA = 0.05

PROFILE_ARG = "profile=2"

#: The idle loop. Its ticks measure how long the guest waited for the host between steps
#: (under icount with sleep=off an idle vCPU jumps straight to its next timer tick), not the
#: workload's cost, so they are reported apart and left out of the diff.
IDLE_SYMBOLS = frozenset({"default_idle", "default_idle_call", "arch_cpu_idle", "do_idle",
                          "cpu_idle_poll", "mwait_idle", "poll_idle", "native_safe_halt",
                          "acpi_idle_do_entry", "acpi_idle_enter", "cpuidle_enter_state"})


@dataclass(frozen=True)
class RawProfile:
    """The sample step in bytes and the per-bucket tick counts."""

    step: int
    counts: tuple[int, ...]


def parse_profile(data: bytes) -> RawProfile:
    """Decode /proc/profile (little-endian 32-bit words on i386)."""
    if len(data) < 8 or len(data) % 4:
        raise LabError(f"/proc/profile has {len(data)} bytes: not a profile buffer")
    words = struct.unpack(f"<{len(data) // 4}I", data)
    step = words[0]
    if step == 0 or step & (step - 1):
        raise LabError(f"/proc/profile step {step} is not a power of two")
    return RawProfile(step, tuple(words[1:]))


def parse_kallsyms_text(text: str) -> tuple[int, list[int], list[str]]:
    """(_stext address, sorted text addresses, their names) from /proc/kallsyms lines."""
    syms: list[tuple[int, str]] = []
    stext = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in ("t", "T"):
            addr = int(parts[0], 16)
            syms.append((addr, parts[2]))
            if parts[2] == "_stext":
                stext = addr
    if stext is None or not syms:
        raise LabError("kallsyms has no _stext: cannot place the profile (are addresses hidden?)")
    syms.sort()
    return stext, [a for a, _ in syms], [n for _, n in syms]


def symbolize(profile: RawProfile, kallsyms_text: str) -> dict[str, int]:
    """Ticks per kernel symbol."""
    stext, addrs, names = parse_kallsyms_text(kallsyms_text)
    ticks: Counter[str] = Counter()
    for i, n in enumerate(profile.counts):
        if n:
            addr = stext + i * profile.step
            j = bisect.bisect_right(addrs, addr) - 1
            ticks[names[j] if j >= 0 else "?"] += n
    return dict(ticks)


def diff_profiles(a: dict[str, int], b: dict[str, int]) -> list[dict[str, Any]]:
    """Rows {symbol, a_ticks, b_ticks, delta = b − a}, largest delta first; idle excluded."""
    rows = [{"symbol": s, "a_ticks": a.get(s, 0), "b_ticks": b.get(s, 0),
             "delta": b.get(s, 0) - a.get(s, 0)} for s in (set(a) | set(b)) - IDLE_SYMBOLS]
    rows = [r for r in rows if r["delta"]]
    return sorted(rows, key=lambda r: (-r["delta"], r["symbol"]))


def kernel_ticks(ticks: dict[str, int]) -> int:
    """Ticks outside the idle loop: what a profile's rows rest on."""
    return sum(n for sym, n in ticks.items() if sym not in IDLE_SYMBOLS)


def annotate(prof: dict[str, Any], alpha: float = ALPHA) -> dict[str, Any]:
    """A stored profile.json with each row's significance: ``p`` (binomial split test of
    a_ticks vs b_ticks, expected split from the two sides' kernel tick totals), ``p_holm``
    (Holm-adjusted over every row) and ``significant`` (p_holm < alpha), largest rise first.

    Also adds ``ticks`` {A: kernel ticks, B: ...}, ``alpha`` and ``method``. Works on profiles
    recorded before the marks existed (they have the same rows and totals). Example::

        annotate({"configs": ["a", "b"], "totals": {"a": {"ticks": 900}, "b": {"ticks": 900}},
                  "rows": [{"symbol": "f", "a_ticks": 60, "b_ticks": 20, "delta": -40}]})
        # rows[0]["significant"] is True (p ~ 7e-6)
    """
    from .stats import holm, split_test

    a, b = prof["configs"]
    totals = prof.get("totals") or {}
    rows = sorted((dict(r) for r in prof["rows"]), key=lambda r: (-r["delta"], r["symbol"]))
    # older profiles without totals: the rows' own sums (rows with no change are not stored)
    side = {a: int((totals.get(a) or {}).get("ticks") or sum(r["a_ticks"] for r in rows)),
            b: int((totals.get(b) or {}).get("ticks") or sum(r["b_ticks"] for r in rows))}
    ps = [split_test(int(r["a_ticks"]), int(r["b_ticks"]), side[a], side[b]) for r in rows]
    for r, p, adj in zip(rows, ps, holm(ps), strict=True):
        r.update(p=p, p_holm=adj, significant=bool(adj == adj and adj < alpha))
    return {**prof, "rows": rows, "ticks": side, "alpha": alpha,
            "method": f"two-sided binomial test per symbol, expected split from the kernel "
                      f"tick totals, Holm-corrected over {len(rows)} rows, alpha {alpha}"}


def collect_script() -> str:
    """Guest shell: the profile buffer then the text symbols, each gzip'd, length-prefixed."""
    return ("p=$(gzip -c /proc/profile | base64 -w0); "
            "k=$(grep -i ' t ' /proc/kallsyms | gzip -c | base64 -w0); "
            "echo \"$p\"; echo \"$k\"")


def decode_gz(b64: str) -> bytes:
    """Undo ``gzip -c | base64`` from the guest."""
    import base64

    return gzip.decompress(base64.b64decode(b64))

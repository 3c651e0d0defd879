"""Parsers for text the guest kernel prints: /proc/meminfo, /proc/vmstat.

Pure functions, tested on output captured from the real guest (tests/data/).
"""

from __future__ import annotations

__all__ = ["parse_meminfo", "parse_vmstat"]


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` → {field: kB}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0])
    return out


def parse_vmstat(text: str) -> dict[str, int]:
    """``/proc/vmstat`` → {counter: value}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out

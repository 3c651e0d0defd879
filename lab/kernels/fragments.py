"""Kconfig fragments: parse, merge in order, apply to a .config, and catch dropped options.

A fragment is a file of ``CONFIG_FOO=value`` and ``# CONFIG_FOO is not set`` lines, like the
kernel's own scripts/kconfig/merge_config.sh takes. ``make olddefconfig`` silently drops an
option whose dependencies are unmet, so after it runs every requested option is checked
against the resulting .config: a dropped option is an error, not a surprise in the guest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import LabError, UsageError

__all__ = [
    "Requested",
    "Dropped",
    "parse_fragment",
    "merge_fragments",
    "parse_dotconfig",
    "apply_fragments",
    "find_dropped",
    "DroppedOptionsError",
]

_SET = re.compile(r"(CONFIG_[A-Za-z0-9_]+)=(.*)")
_UNSET = re.compile(r"# (CONFIG_[A-Za-z0-9_]+) is not set")
_VALUE = re.compile(r'[ynm]|-?[0-9]+|0x[0-9a-fA-F]+|"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class Requested:
    """One option a fragment asks for; ``value`` is ``n`` for ``# ... is not set``."""

    symbol: str
    value: str
    origin: str  # "fragment.config:LINE", for error messages and `lab kernel show`


@dataclass(frozen=True)
class Dropped:
    """An option olddefconfig did not keep: ``got`` is None when the symbol vanished."""

    want: Requested
    got: str | None


class DroppedOptionsError(LabError):
    """olddefconfig dropped or changed options a fragment asked for."""

    def __init__(self, dropped: list[Dropped]) -> None:
        lines = [
            f"{d.want.symbol}={d.want.value} ({d.want.origin}) became "
            + ("absent" if d.got is None else "not set" if d.got == "n" else d.got)
            for d in dropped
        ]
        super().__init__(
            "olddefconfig dropped options the fragments ask for (unmet dependency or a choice?): "
            + "; ".join(lines)
        )
        self.dropped = dropped


def parse_fragment(text: str, origin: str) -> list[Requested]:
    """Parse one fragment; anything that is not an option, a comment or blank is a UsageError."""
    out: list[Requested] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{origin}:{n}"
        if m := _UNSET.fullmatch(line):
            out.append(Requested(m.group(1), "n", where))
        elif m := _SET.fullmatch(line):
            if not _VALUE.fullmatch(m.group(2)):
                raise UsageError(f"{where}: bad value {m.group(2)!r} (y, n, m, number, \"text\")")
            out.append(Requested(m.group(1), m.group(2), where))
        elif line and not line.startswith("#"):
            raise UsageError(f"{where}: not a Kconfig line: {raw!r}")
    return out


def merge_fragments(fragments: list[tuple[str, str]]) -> dict[str, Requested]:
    """Merge ``(name, text)`` fragments in order; a later one overrides an earlier one's option.

    The result keeps first-seen order so the applied .config and `lab kernel show` read the
    way the fragments are written.
    """
    merged: dict[str, Requested] = {}
    for name, text in fragments:
        for req in parse_fragment(text, name):
            merged[req.symbol] = req
    return merged


def parse_dotconfig(text: str) -> dict[str, str]:
    """Symbols of a .config: ``{"CONFIG_X": "y", "CONFIG_Y": "n", ...}`` (not set → ``n``)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if m := _UNSET.fullmatch(line.strip()):
            out[m.group(1)] = "n"
        elif m := _SET.fullmatch(line.strip()):
            out[m.group(1)] = m.group(2)
    return out


def apply_fragments(dotconfig: str, requested: dict[str, Requested]) -> str:
    """Return ``dotconfig`` with each requested symbol's old line removed and the new appended.

    Like merge_config.sh. Appending also settles choices: kconfig takes the last ``=y`` of a
    choice group it reads, so ``CONFIG_HIGHMEM64G=y`` wins over the base's ``HIGHMEM4G=y``.
    """
    kept = [
        line for line in dotconfig.splitlines()
        if not ((m := _SET.fullmatch(line.strip()) or _UNSET.fullmatch(line.strip()))
                and m.group(1) in requested)
    ]
    kept.append("# ukva-lab fragments")
    for r in requested.values():
        kept.append(f"# {r.symbol} is not set" if r.value == "n" else f"{r.symbol}={r.value}")
    return "\n".join(kept) + "\n"


def find_dropped(requested: dict[str, Requested], dotconfig: str) -> list[Dropped]:
    """Options whose value in the final .config differs from what was asked.

    Asking for ``n`` is satisfied by the symbol being absent too (a dependency hid it).
    """
    have = parse_dotconfig(dotconfig)
    dropped = []
    for r in requested.values():
        got = have.get(r.symbol)
        if got == r.value or (r.value == "n" and got is None):
            continue
        dropped.append(Dropped(r, got))
    return dropped

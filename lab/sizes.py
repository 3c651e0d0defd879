"""Parse human memory sizes (``8G``, ``512M``) into MiB, with bounds the guest can use."""

from __future__ import annotations

import re

from .errors import UsageError

__all__ = ["parse_mem_mib", "MIN_MEM_MIB", "MAX_MEM_MIB"]

MIN_MEM_MIB = 256
#: PAE addresses 64 GiB; beyond this the 32-bit kernel's lowmem cannot hold struct pages.
MAX_MEM_MIB = 64 * 1024

_UNITS = {"M": 1, "MI": 1, "MB": 1, "MIB": 1, "G": 1024, "GI": 1024, "GB": 1024, "GIB": 1024,
          "T": 1024 * 1024, "TI": 1024 * 1024, "TB": 1024 * 1024, "TIB": 1024 * 1024}


def parse_mem_mib(text: str) -> int:
    """Return the size in MiB; ``parse_mem_mib("8G") == 8192``. Raises UsageError when malformed
    or out of range."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise UsageError(
            f"malformed memory size {text!r}: use a number with M or G, e.g. 8G or 6144M"
        )
    mib = int(float(m.group(1)) * _UNITS[unit])
    # A well-formed size the guest cannot use says which bound it crossed and why (T is
    # parsed only so that "--mem 1T" is called too large rather than malformed).
    if mib > MAX_MEM_MIB:
        raise UsageError(
            f"memory size {text!r} out of range: too large, at most {MAX_MEM_MIB // 1024}G "
            "(PAE addresses 64 GiB)"
        )
    if mib < MIN_MEM_MIB:
        raise UsageError(
            f"memory size {text!r} out of range: too small, at least {MIN_MEM_MIB}M "
            "(HighMem needs more than 4G)"
        )
    return mib

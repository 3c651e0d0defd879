"""readprofile parsing and symbolisation on synthetic buffers laid out as kernel/profile.c does."""

from __future__ import annotations

import struct

import pytest

from lab.errors import LabError
from lab.profile import diff_profiles, parse_profile, symbolize

KALLSYMS = "\n".join([
    "c1000000 T _stext",
    "c1000000 T startup_32",
    "c1000100 t __kmap_local_pfn_prot",
    "c1000180 T default_idle",
    "c1000200 T do_user_addr_fault",
    "c1000300 D some_data",
])


def buffer(step: int, counts: list[int]) -> bytes:
    return struct.pack(f"<{len(counts) + 1}I", step, *counts)


def test_parse_and_symbolize() -> None:
    counts = [0] * 256
    counts[0x100 // 4] = 5  # first word of __kmap_local_pfn_prot
    counts[0x17C // 4] = 2  # last word before default_idle
    counts[0x180 // 4] = 9  # default_idle
    counts[0x204 // 4] = 3
    prof = parse_profile(buffer(4, counts))
    assert prof.step == 4 and len(prof.counts) == 256
    assert symbolize(prof, KALLSYMS) == {"__kmap_local_pfn_prot": 7, "default_idle": 9,
                                         "do_user_addr_fault": 3}


def test_bad_buffers() -> None:
    with pytest.raises(LabError):
        parse_profile(b"\x04\x00\x00")
    with pytest.raises(LabError, match="power of two"):
        parse_profile(buffer(6, [1]))
    with pytest.raises(LabError, match="_stext"):
        symbolize(parse_profile(buffer(4, [1])), "c1000000 T startup_32")


def test_diff_sorts_and_leaves_out_idle() -> None:
    a = {"__kmap_local_pfn_prot": 20, "default_idle": 700, "wp_page_copy": 5}
    b = {"__kmap_local_pfn_prot": 4, "default_idle": 100, "do_user_addr_fault": 3}
    rows = diff_profiles(a, b)
    assert [r["symbol"] for r in rows] == ["do_user_addr_fault", "wp_page_copy",
                                           "__kmap_local_pfn_prot"]
    assert rows[-1] == {"symbol": "__kmap_local_pfn_prot", "a_ticks": 20, "b_ticks": 4,
                        "delta": -16}

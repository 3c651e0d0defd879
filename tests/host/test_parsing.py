"""lab/parsing.py on /proc files captured in the real guest (tests/data/meminfo.txt, vmstat.txt).

The two files were read in the same instant by the agent (one snapshot), so besides the values
themselves the kernel's own identities must hold between them: a parser that dropped, shifted
or mis-scaled a field would break one of these.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.parsing import parse_meminfo, parse_vmstat

PAGE_KB = 4  # i386


@pytest.fixture
def meminfo(data_dir: Path) -> dict[str, int]:
    return parse_meminfo((data_dir / "meminfo.txt").read_text())


@pytest.fixture
def vmstat(data_dir: Path) -> dict[str, int]:
    return parse_vmstat((data_dir / "vmstat.txt").read_text())


def test_meminfo_reads_every_line(data_dir: Path, meminfo: dict[str, int]) -> None:
    lines = (data_dir / "meminfo.txt").read_text().splitlines()
    assert len(meminfo) == len(lines) == 57
    assert list(meminfo) == [line.split(":")[0] for line in lines], "file order, names intact"
    assert meminfo["MemTotal"] == 8213272
    assert meminfo["Active(anon)"] == 2820, "names with parentheses are kept whole"
    assert meminfo["HugePages_Total"] == 0 and meminfo["Hugepagesize"] == 2048, "with or w/o kB"
    assert all(isinstance(v, int) and v >= 0 for v in meminfo.values())


def test_meminfo_is_a_pae_guest_with_8_gib(meminfo: dict[str, int]) -> None:
    """The lab's premise, as the kernel reports it: most of 8 GiB is HighMem."""
    assert meminfo["HighTotal"] + meminfo["LowTotal"] == meminfo["MemTotal"]
    assert meminfo["HighFree"] + meminfo["LowFree"] == meminfo["MemFree"]
    assert meminfo["HighTotal"] > 10 * meminfo["LowTotal"]
    assert 7.5 * 2**20 < meminfo["MemTotal"] <= 8 * 2**20


def test_vmstat_reads_every_line(data_dir: Path, vmstat: dict[str, int]) -> None:
    lines = (data_dir / "vmstat.txt").read_text().splitlines()
    assert len(vmstat) == len(lines)
    assert list(vmstat) == [line.split()[0] for line in lines]
    assert vmstat["pgfault"] == 4065 and vmstat["pgalloc_high"] == 5098


def test_meminfo_and_vmstat_agree(meminfo: dict[str, int], vmstat: dict[str, int]) -> None:
    """Same snapshot, two views: pages in vmstat, kB in meminfo."""
    assert vmstat["nr_free_pages"] * PAGE_KB == meminfo["MemFree"]
    assert vmstat["nr_page_table_pages"] * PAGE_KB == meminfo["PageTables"]
    assert vmstat["nr_kernel_stack"] == meminfo["KernelStack"]  # already in kB


def test_meminfo_skips_what_is_not_a_field() -> None:
    text = (
        "MemTotal:  100 kB\n"
        "\n"
        "no colon 5 kB\n"
        "Empty:\n"
        "Words:   abc kB\n"
        "Negative:  -3 kB\n"
        "  Spaced :  7 kB\r\n"
        "Bare:42\n"
    )
    assert parse_meminfo(text) == {"MemTotal": 100, "Spaced": 7, "Bare": 42}
    assert parse_meminfo("") == {}


def test_vmstat_skips_what_is_not_a_counter() -> None:
    text = (
        "pgfault 10\n"
        "nr_drift -2\n"  # per-CPU drift can make a summed counter negative
        "three words 1\n"
        "lonely\n"
        "pgmajfault x\n"
        "dash -\n"
        "\n"
        "pgfree 3\r\n"
    )
    assert parse_vmstat(text) == {"pgfault": 10, "nr_drift": -2, "pgfree": 3}
    assert parse_vmstat("") == {}


def test_later_duplicate_wins() -> None:
    """Each parse is one snapshot: a repeated name (never seen in a real file) takes the last."""
    assert parse_vmstat("a 1\na 2\n") == {"a": 2}
    assert parse_meminfo("A: 1 kB\nA: 2 kB\n") == {"A": 2}

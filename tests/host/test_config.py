"""Configurations, kernel descriptions and memory sizes are data, validated on load."""

from __future__ import annotations

import pytest

from lab.config import list_configs, load_boot_defaults, load_config, parse_config_list
from lab.errors import UsageError
from lab.sizes import parse_mem_mib


def test_shipped_configurations_load() -> None:
    names = list_configs()
    assert {"highpte", "lowpte"} <= set(names)
    assert load_config("lowpte").cmdline == ("userpte=nohigh",)
    assert load_config("highpte").cmdline == ()
    assert load_config("highpte").kernel == load_config("lowpte").kernel


def test_unknown_configuration_names_the_valid_ones() -> None:
    with pytest.raises(UsageError, match="highpte, lowpte"):
        load_config("nohighpte")
    with pytest.raises(UsageError):
        load_config("../configs/highpte")


def test_config_list_rejects_duplicates_and_empty() -> None:
    assert [c.name for c in parse_config_list("highpte, lowpte")] == ["highpte", "lowpte"]
    with pytest.raises(UsageError, match="twice"):
        parse_config_list("highpte,highpte")
    with pytest.raises(UsageError):
        parse_config_list(" , ")


def test_boot_defaults_follow_facts() -> None:
    d = load_boot_defaults()
    assert d.qemu == "qemu-system-x86_64" and d.cpu == "Nehalem"
    assert parse_mem_mib(d.mem) > 4096, "HighMem needs more than 4 GiB of guest RAM"


@pytest.mark.parametrize(
    "text,mib", [("8G", 8192), ("512M", 512), ("6144MiB", 6144), ("1.5G", 1536)]
)
def test_mem_sizes(text: str, mib: int) -> None:
    assert parse_mem_mib(text) == mib


@pytest.mark.parametrize("text", ["", "8", "8X", "-1G", "G", "128M", "100G", "8 G B"])
def test_bad_mem_sizes(text: str) -> None:
    with pytest.raises(UsageError):
        parse_mem_mib(text)


def test_ukva_family_differs_from_built_pae_only_by_the_series() -> None:
    """The UKVA comparison is fair only if ukva is built-pae + the series + its option, and
    the debug and off variants change nothing else."""
    from lab.config import load_kernel_description

    def desc(config: str) -> dict:
        return load_kernel_description(load_config(config).kernel).data

    base, ukva, debug = desc("built-highpte"), desc("ukva"), desc("ukva-debug")
    assert load_config("built-lowpte").kernel == load_config("built-highpte").kernel
    for key in ("source", "package", "base"):
        assert ukva[key] == base[key] == debug[key]
    assert ukva["fragments"] == [*base["fragments"], "ukva.config"]
    assert ukva["patches"] == "ukva" and base.get("patches") != "ukva"
    assert debug["fragments"] == [*ukva["fragments"], "mm-debug.config"]
    assert debug["patches"] == ukva["patches"]
    assert load_config("ukva").cmdline == ()
    off = load_config("ukva-off")
    assert (off.kernel, off.cmdline) == ("ukva", ("ukva=off",))


@pytest.mark.parametrize(
    "text,words",
    [("1T", "too large, at most 64G"), ("65G", "too large"), ("128M", "too small, at least 256M")],
)
def test_out_of_range_sizes_name_the_bound(text: str, words: str) -> None:
    """A well-formed size the guest cannot use is called too large or too small, not malformed."""
    with pytest.raises(UsageError) as e:
        parse_mem_mib(text)
    assert words in str(e.value)
    assert "malformed" not in str(e.value)

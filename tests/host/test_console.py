"""Console failure detection, fed with console logs captured from the real guest."""

from __future__ import annotations

from pathlib import Path

from lab.guest.console import first_fatal, scan_console


def test_clean_boot_has_no_events(data_dir: Path) -> None:
    text = (data_dir / "console-clean-boot.log").read_text()
    assert "lab-agent: serving" in text
    assert scan_console(text) == []


def test_sysrq_panic_is_fatal(data_dir: Path) -> None:
    # provoked with: lab exec -- sh -c 'echo c > /proc/sysrq-trigger'
    events = scan_console((data_dir / "console-sysrq-panic.log").read_text())
    fatal = first_fatal(events)
    assert fatal is not None and fatal.kind == "panic"
    assert fatal.text == "Kernel panic - not syncing: sysrq triggered crash"


def test_boot_panic_is_fatal(data_dir: Path) -> None:
    # provoked with: lab up --append rdinit=/nonexistent --append init=/nonexistent
    fatal = first_fatal(scan_console((data_dir / "console-boot-panic.log").read_text()))
    assert fatal is not None and fatal.kind == "panic"
    assert "Unable to mount root fs" in fatal.text


def test_kernel_report_headers() -> None:
    # The exact header formats 6.1 prints (mm/fault paths, lib/bug.c, kernel/panic.c,
    # kernel/locking/lockdep.c, kernel/hung_task.c).
    log = "\n".join(
        [
            "[   12.000001] BUG: unable to handle page fault for address: ff000ffc",
            "[   12.000002] Oops: 0002 [#1] PREEMPT SMP PTI",
            "[   13.000000] WARNING: CPU: 1 PID: 77 at mm/memory.c:1234 zap_pte_range+0x1/0x2",
            "[   14.000000] WARNING: possible circular locking dependency detected",
            "[   15.000000] INFO: task khugepaged:42 blocked for more than 120 seconds.",
            "[   16.000000] kernel BUG at mm/pgtable-generic.c:50!",
        ]
    )
    kinds = [e.kind for e in scan_console(log)]
    assert kinds == ["bug", "oops", "warning", "lockdep", "hung-task", "bug"]
    assert first_fatal(scan_console(log)).lineno == 1  # type: ignore[union-attr]
    warnings_only = "\n".join(log.splitlines()[2:5])
    assert first_fatal(scan_console(warnings_only)) is None  # warnings are reported, not fatal

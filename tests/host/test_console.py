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


def test_soft_lockup_is_its_own_fatal_kind(data_dir: Path) -> None:
    # captured in CI: the stock kernel under TCG, 2 vCPUs, while the lab removed its hist
    # triggers (text_poke_bp waiting 22 s for the other vCPU's IPI answer; it never came)
    events = scan_console((data_dir / "console-soft-lockup.log").read_text())
    assert [e.kind for e in events] == ["soft-lockup"]
    assert events[0].text.startswith("BUG: soft lockup - CPU#1 stuck for 22s!")
    assert first_fatal(events) is events[0]
    other = scan_console("BUG: Bad page state in process sh")
    assert [e.kind for e in other] == ["bug"]


def test_measurements_record_what_the_console_said_during_them(tmp_path: Path) -> None:
    from lab.trace import _console_events, _console_offset

    log = tmp_path / "console.log"
    log.write_text("[    1.0] booted\n[    2.0] WARNING: CPU: 0 PID: 1 at mm/x.c:1 f+0x1/0x2\n")

    class Session:
        console_log = log

    start = _console_offset(Session())  # type: ignore[arg-type]
    assert start == log.stat().st_size
    with log.open("a") as f:
        f.write("[   30.7] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n")
    events = _console_events(Session(), start)  # type: ignore[arg-type]
    assert events == [{"kind": "rcu-stall",
                       "text": "rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"}]
    assert _console_events(object(), None) == []  # type: ignore[arg-type]  # a model: none

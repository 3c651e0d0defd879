"""Guest lifecycle without QEMU: no orphans (pdeathsig, watchdog), stale state, private state.

Stand-ins replace QEMU: ``sleep`` for a guest process, a Python one-liner for a process that
binds a Unix socket the way QEMU binds its QMP and agent sockets. Every process a test starts
is killed by pid before it ends.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.guest.boot import default_instance
from lab.guest.qemu import spawn_qemu
from lab.guest.vm import Guest, Instance
from lab.paths import ensure_state_dir, state_dir

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _gone(pid: int, create_time: float, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            p = psutil.Process(pid)
            if p.create_time() != create_time or p.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids the test started; whatever is still alive at the end is killed (by pid)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


# -- the state directory and its sockets are private ---------------------------------------


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_state_dir_and_instance_are_0700_whatever_the_umask(loose_umask: None) -> None:
    root = state_dir()
    root.mkdir(parents=True, mode=0o755)  # left by an older lab with a loose umask
    os.chmod(root, 0o755)
    inst = default_instance()
    inst.prepare()
    assert _mode(root) == 0o700 and _mode(inst.dir) == 0o700
    assert _mode(inst.console_log) == 0o600
    assert ensure_state_dir() == root and _mode(root) == 0o700


def test_qemu_creates_its_sockets_private(tmp_path: Path, loose_umask: None) -> None:
    sock = tmp_path / "qmp.sock"
    fake_qemu = [sys.executable, "-c",
                 f"import socket; s = socket.socket(socket.AF_UNIX); s.bind({str(sock)!r})"]
    with (tmp_path / "err").open("w") as err:
        proc = spawn_qemu(fake_qemu, err, die_with_parent=True)
    assert proc.wait(30) == 0
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert _mode(sock) & 0o077 == 0, oct(_mode(sock))


def test_lab_up_lock_creates_the_state_dir_private(loose_umask: None) -> None:
    from lab.commands.guest import _boot_lock

    os.close(_boot_lock())
    assert _mode(state_dir()) == 0o700 and _mode(default_instance().dir) == 0o700


# -- no orphans: the guest dies with its lab process -----------------------------------------

_OWNER = textwrap.dedent("""
    import subprocess, sys, threading, time
    from lab.guest.qemu import spawn_qemu
    mode = sys.argv[1]
    def start():
        p = spawn_qemu(["sleep", "300"], subprocess.DEVNULL, die_with_parent=(mode != "up"))
        print(p.pid, flush=True)
    if mode == "thread":  # spawned from a thread that then ends, as a worker thread would
        t = threading.Thread(target=start)
        t.start()
        t.join()
    else:
        start()
    print("ready", flush=True)
    time.sleep(300)
""")


def _owner_and_guest(mode: str, started: list[int]) -> tuple[subprocess.Popen[str], int, float]:
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, mode], stdout=subprocess.PIPE,
                             text=True)
    started.append(owner.pid)
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    started.append(pid)
    assert owner.stdout.readline().strip() == "ready"
    return owner, pid, psutil.Process(pid).create_time()


@pytest.mark.parametrize("mode", ["main", "thread"])
def test_guest_dies_when_its_owner_is_sigkilled(mode: str, started: list[int]) -> None:
    owner, pid, ctime = _owner_and_guest(mode, started)
    time.sleep(1.0)
    assert not _gone(pid, ctime, 0.1), "the guest must outlive the thread that started it"
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    assert _gone(pid, ctime, 5.0), f"guest pid {pid} outlived its SIGKILLed owner ({mode})"


def test_lab_up_guest_outlives_its_command(started: list[int]) -> None:
    owner, pid, ctime = _owner_and_guest("up", started)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    assert not _gone(pid, ctime, 1.5), "a `lab up` guest is long-lived on purpose"


def test_pdeathsig_race_parent_already_gone(started: list[int]) -> None:
    """A child whose parent died before prctl took effect kills itself (getppid check)."""
    from lab.guest import qemu

    code = textwrap.dedent("""
        import os, signal, sys
        from lab.guest import qemu
        pid = os.fork()
        if pid == 0:
            qemu._child_setup(int(sys.argv[1]), True)  # the recorded parent is not ours
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
    """)
    assert qemu._prctl is not None
    out = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip() == "True", out.stderr


# -- stale `lab up` state: found and cleaned by status and down ---------------------------------


def _write_state(inst: Instance, **state: object) -> None:
    inst.prepare()
    for sock in (inst.agent_socket, inst.qmp_socket):
        sock.touch()  # left behind by the QEMU that is gone
    inst.state_file.write_text(json.dumps({"config": "highpte", "console_log":
                                           str(inst.console_log), **state}))


def _exited_pid() -> tuple[int, float]:
    p = subprocess.Popen(["true"])
    ctime = psutil.Process(p.pid).create_time()
    p.wait()
    return p.pid, ctime


def test_status_and_down_clean_a_guest_whose_qemu_is_gone() -> None:
    inst = default_instance()
    pid, ctime = _exited_pid()
    _write_state(inst, pid=pid, create_time=ctime, argv=["qemu-system-x86_64"])
    guest = Guest.recorded(inst)
    assert guest is not None and "has exited" in (guest.stale_reason() or "")
    assert Guest.running(inst) is None
    res = runner.invoke(app, ["status", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["running"] is False and data["cleaned"] is True
    assert "QEMU exited" in data["lost"] and "has exited" in data["stale"]
    assert not inst.state_file.exists()
    assert not inst.agent_socket.exists() and not inst.qmp_socket.exists()
    assert inst.console_log.exists(), "the console log stays for the post-mortem"
    # down finds the same kind of leftover and says what it cleaned
    _write_state(inst, pid=pid, create_time=ctime, argv=["qemu-system-x86_64"])
    res = runner.invoke(app, ["down"])
    assert res.exit_code == 0 and "no guest running" in res.output
    assert "cleaned up stale state" in res.output and "has exited" in res.output
    assert not inst.state_file.exists() and not inst.qmp_socket.exists()


@pytest.mark.parametrize("how", ["create_time", "argv"])
def test_a_reused_pid_is_never_our_guest_and_never_killed(how: str, started: list[int]) -> None:
    other = subprocess.Popen(["sleep", "300"])  # another program now holds the pid
    started.append(other.pid)
    ctime = psutil.Process(other.pid).create_time()
    inst = default_instance()
    if how == "create_time":
        _write_state(inst, pid=other.pid, create_time=ctime - 3600, argv=["sleep", "300"])
        want = "reused"
    else:
        _write_state(inst, pid=other.pid, create_time=ctime,
                     argv=["qemu-system-x86_64", "-name", "ukva-lab"])
        want = "another program"
    guest = Guest.recorded(inst)
    assert guest is not None and want in (guest.stale_reason() or "")
    assert guest.process() is None and Guest.running(inst) is None
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert data["running"] is False and want in data["stale"] and want in data["lost"]
    assert not inst.state_file.exists()
    _write_state(inst, pid=other.pid, create_time=ctime - 3600, argv=["sleep", "300"])
    res = runner.invoke(app, ["down", "--timeout", "2"])
    assert res.exit_code == 0 and "cleaned up stale state" in res.output
    assert other.poll() is None, "lab down must not kill a process that is not its QEMU"
    other.kill()
    other.wait()


def test_a_guest_whose_agent_is_dead_is_reported_then_stopped(started: list[int]) -> None:
    fake = subprocess.Popen(["sleep", "300"])  # QEMU alive, agent silent (hung guest)
    started.append(fake.pid)
    inst = default_instance()
    _write_state(inst, pid=fake.pid, create_time=psutil.Process(fake.pid).create_time(),
                 argv=["sleep", "300"])
    inst.agent_socket.unlink()
    t0 = time.monotonic()
    res = runner.invoke(app, ["status", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert time.monotonic() - t0 < 15, "status must not hang on a dead agent"
    assert data["running"] is True and data["agent_answers"] is False
    assert data["qemu_pid"] == fake.pid and "uptime_seconds" not in data
    assert inst.state_file.exists(), "status reports a live QEMU; only down stops it"
    res = runner.invoke(app, ["status"])
    assert "not answering" in res.output and "lab down" in res.output
    res = runner.invoke(app, ["down", "--timeout", "2"])
    assert res.exit_code == 0 and "guest down (killed)" in res.output, res.output
    assert fake.poll() is not None and not inst.state_file.exists()

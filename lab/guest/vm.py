"""Run one QEMU guest: boot it, wait for the agent, watch for panics, power it off.

State lives in an instance directory (the persistent one for ``lab up``, a fresh one per
configuration for ``lab trace``), private to the user (0700): the QMP and agent sockets, the
console log, QEMU's stderr and state.json (pid plus its start time and argv, so a recycled pid
is never mistaken for our QEMU). Whatever goes wrong while booting (an exception, Ctrl-C),
QEMU is killed before re-raising; a guest booted for one command dies with the lab process
even on SIGKILL (:func:`~lab.guest.qemu.spawn_qemu`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..errors import GuestLostError, LabError
from ..paths import ensure_state_dir, private_dir, state_dir
from ..polling import wait_until
from .agent import AgentClient, AgentUnavailable, ExecResult
from .console import first_fatal, read_console, scan_console
from .procident import start_ticks
from .qemu import BootSpec, build_qemu_argv, spawn_qemu

__all__ = ["Instance", "Guest"]

_SUN_PATH_MAX = 107


@dataclass(frozen=True)
class Instance:
    """The files of one guest instance."""

    dir: Path

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def agent_socket(self) -> Path:
        return self.dir / "agent.sock"

    @property
    def qmp_socket(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.dir / "agent.lock"

    @property
    def qemu_stderr(self) -> Path:
        return self.dir / "qemu.stderr"

    def ensure_dir(self) -> Path:
        """The instance directory, created private (0700) with the state dir above it."""
        if state_dir() in self.dir.parents:
            ensure_state_dir()
        return private_dir(self.dir)

    def prepare(self) -> None:
        """Create the directory (0700), drop stale sockets, keep the previous console log."""
        self.ensure_dir()
        for sock in (self.agent_socket, self.qmp_socket):
            if len(str(sock)) > _SUN_PATH_MAX:
                raise LabError(f"socket path too long for AF_UNIX ({len(str(sock))} bytes): {sock}")
            sock.unlink(missing_ok=True)
        if self.console_log.exists():
            os.replace(self.console_log, self.dir / "console.prev.log")
        os.close(os.open(self.console_log, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))


class Guest:
    """A running (or just-died) QEMU guest and the means to talk to it."""

    def __init__(self, instance: Instance, state: dict[str, Any]) -> None:
        self.instance = instance
        self.state = state
        self._proc: psutil.Process | None = None

    # -- finding and checking the process ---------------------------------------------------

    @classmethod
    def recorded(cls, instance: Instance) -> Guest | None:
        """The guest ``instance``'s state file describes, alive or not (None: no state)."""
        try:
            state = json.loads(instance.state_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return cls(instance, state) if isinstance(state, dict) else None

    @classmethod
    def running(cls, instance: Instance) -> Guest | None:
        """The guest recorded in ``instance`` if its QEMU process is still alive."""
        guest = cls.recorded(instance)
        return guest if guest is not None and guest.process() else None

    def process(self) -> psutil.Process | None:
        """Our QEMU process, or None when it is gone (or the pid was recycled)."""
        return None if self.stale_reason() else self._proc

    def stale_reason(self) -> str | None:
        """Why the recorded QEMU process is not ours any more; None while it is.

        The pid must exist, have the start time recorded at boot (a recycled pid has a later
        one) and run the argv recorded at boot (another program reusing the pid does not). The
        start time is compared in clock ticks since boot (``procident``), which a step of the
        wall clock does not move; state written by an older lab (a ``lab up`` guest that
        outlived an upgrade) has only psutil's wall-clock ``create_time``, compared within a
        second.
        """
        self._proc = None
        pid = self.state.get("pid")
        try:
            p = psutil.Process(int(pid))  # type: ignore[arg-type]
            if "start_ticks" in self.state:
                reused = start_ticks(p.pid) != int(self.state["start_ticks"])
            else:
                reused = abs(p.create_time() - float(self.state["create_time"])) > 1.0
            if reused:
                return f"pid {pid} was reused by another process ({p.name()})"
            if p.status() == psutil.STATUS_ZOMBIE:
                try:
                    p.wait(0)  # reap it if it is our child
                except (psutil.Error, ChildProcessError):
                    pass
                return f"QEMU (pid {pid}) has exited"
            argv = self.state.get("argv")
            if argv is not None and p.cmdline() != argv:
                return f"pid {pid} runs another program ({p.name()})"
        except psutil.NoSuchProcess:
            return f"QEMU (pid {pid}) has exited"
        except (psutil.Error, KeyError, TypeError, ValueError) as e:
            return f"cannot check pid {pid}: {e}"
        self._proc = p
        return None

    def agent_answers(self, timeout: float = 10.0) -> bool:
        """Does the agent answer a ping within ``timeout`` s (QEMU alive but guest hung: no)?"""
        try:
            with self.agent() as agent:
                return agent.ping(timeout=timeout) is not None
        except (AgentUnavailable, OSError):
            return False

    def lost_reason(self, settle: float = 3.0) -> str | None:
        """Why the guest is unusable: a fatal console event, or QEMU gone; None when fine.

        When QEMU is gone but the console shows nothing fatal yet, the log is re-read for up
        to ``settle`` seconds: the agent's channel can drop a moment before the console's last
        lines (the panic) are visible in the log file.
        """

        def verdict() -> tuple[str | None] | None:
            """(why) once the console shows a fatal event, (None) while QEMU lives."""
            fatal = first_fatal(scan_console(read_console(self.instance.console_log)))
            if fatal:
                return (f"{fatal.kind}: {fatal.text}",)
            return (None,) if self.process() is not None else None

        found = wait_until(verdict, settle, 0.2)
        if found is not None:
            return found[0]
        tail = ""
        try:
            lines = self.instance.qemu_stderr.read_text().strip().splitlines()
            tail = f": {lines[-1]}" if lines else ""
        except OSError:
            pass
        return f"QEMU exited{tail}"

    def watch(self) -> None:
        """Raise GuestLostError (and stop QEMU) if the guest panicked, oopsed or died."""
        reason = self.lost_reason()
        if reason:
            self.kill()
            raise GuestLostError(reason, str(self.instance.console_log))

    # -- booting ----------------------------------------------------------------------------

    @classmethod
    def boot(
        cls,
        instance: Instance,
        spec: BootSpec,
        meta: dict[str, Any],
        ready_timeout: float,
        die_with_parent: bool = True,
    ) -> Guest:
        """Start QEMU and return once the agent answers; kill QEMU on any failure.

        ``die_with_parent`` (the default): QEMU is killed when this process dies, even by
        SIGKILL. Only ``lab up`` passes False, for the guest that outlives it on purpose.
        """
        instance.prepare()
        argv = build_qemu_argv(spec)
        with instance.qemu_stderr.open("w") as err:
            proc = spawn_qemu(argv, err, die_with_parent=die_with_parent)
        t0 = time.monotonic()
        state = {
            **meta,
            "pid": proc.pid,
            "start_ticks": start_ticks(proc.pid),  # identity with pid: see stale_reason
            "argv": argv,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "console_log": str(instance.console_log),
            "dies_with_parent": die_with_parent,
        }
        guest = cls(instance, state)
        try:
            instance.state_file.write_text(json.dumps(state, indent=2))
            pong = guest._wait_ready(t0, ready_timeout)
            state["ready_seconds"] = round(time.monotonic() - t0, 2)
            state["release"] = pong.get("release")
            state["machine"] = pong.get("machine")
            state["crng_ready"] = pong.get("crng_ready")  # the agent seeds it (lab-agent.c)
            instance.state_file.write_text(json.dumps(state, indent=2))
            return guest
        except BaseException:
            guest.kill()
            raise

    def _wait_ready(self, t0: float, ready_timeout: float) -> dict[str, Any]:
        def pong() -> dict[str, Any] | None:
            self.watch()  # raises GuestLostError as soon as the console or QEMU shows trouble
            try:
                with self.agent() as agent:
                    return agent.ping(timeout=1.0)
            except AgentUnavailable:
                return None

        answer = wait_until(pong, max(0.0, ready_timeout - (time.monotonic() - t0)))
        if not answer:
            raise GuestLostError(
                f"boot hung: no answer from the agent within {ready_timeout:.0f} s",
                str(self.instance.console_log),
            )
        return answer

    # -- talking to it ----------------------------------------------------------------------

    def agent(self) -> AgentClient:
        """A client for the agent channel (use as a context manager)."""
        return AgentClient(self.instance.agent_socket, self.instance.lock_file)

    def exec(
        self, argv: list[str], timeout: float = 0, snapshots: list[str] | tuple[str, ...] = ()
    ) -> ExecResult:
        """Run a command in the guest, noticing a panic or a dead QEMU while it runs."""
        self.watch()
        try:
            with self.agent() as agent:
                return agent.run(argv, timeout=timeout, snapshots=snapshots, watch=self.watch)
        except AgentUnavailable:
            self.watch()
            raise

    # -- stopping ---------------------------------------------------------------------------

    def _wait_gone(self, timeout: float) -> bool:
        p = self.process()
        if p is None:
            return True
        try:
            p.wait(timeout)
        except psutil.TimeoutExpired:
            return False
        except psutil.Error:
            pass
        return True

    def qmp(self, command: str) -> Any:
        """Send one QMP command through QEMU's own qemu.qmp library."""
        from qemu.qmp.legacy import QEMUMonitorProtocol

        mon = QEMUMonitorProtocol(str(self.instance.qmp_socket))
        try:
            mon.connect()
            return mon.cmd(command)
        finally:
            mon.close()

    def shutdown(self, timeout: float = 30.0) -> str:
        """Power off cleanly if possible, then harder; returns how the guest went down."""
        how = "already stopped"
        if self.process() is not None:
            how = "guest powered off"
            try:
                with self.agent() as agent:
                    acked = agent.poweroff()
            except (AgentUnavailable, OSError):
                acked = False
            if not (acked and self._wait_gone(timeout / 2)):
                how = "QMP quit"
                try:
                    self.qmp("quit")
                    quitting = True
                except Exception:  # noqa: BLE001 - the monitor may already be gone
                    quitting = False
                if not (quitting and self._wait_gone(timeout / 2)):
                    how = "killed"
                    self.kill()
        self.forget()
        return how

    def kill(self) -> None:
        """SIGKILL QEMU and wait until it is gone; never leaves a process behind."""
        p = self.process()
        if p is not None:
            try:
                p.kill()
                p.wait(10)
            except psutil.Error:
                pass
        self.forget()

    def forget(self) -> None:
        """Drop the state file and sockets (the console log stays, for the post-mortem)."""
        self.instance.state_file.unlink(missing_ok=True)
        for sock in (self.instance.agent_socket, self.instance.qmp_socket):
            sock.unlink(missing_ok=True)

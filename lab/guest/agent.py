"""Host side of the agent line protocol (see vm/guest/lab-agent.c for the guest side).

A request is ``<id> <op> <base64 payload>``; the agent answers one JSON line carrying the same
id. Replies with another id (stale pings from the boot wait) are skipped. Reply strings are
bytes encoded as code points 0-255; :func:`_bytes_text` turns them back into text.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LabError
from ..polling import wait_until

__all__ = ["AgentClient", "ExecResult", "AgentUnavailable"]


class AgentUnavailable(LabError):
    """Nothing answers on the agent socket (the guest is not up, or not yet)."""


def _bytes_text(s: str) -> str:
    return s.encode("latin-1").decode("utf-8", "replace")


@dataclass
class ExecResult:
    """One command's outcome in the guest."""

    rc: int
    signal: int
    timed_out: bool
    stdout: str
    stderr: str
    wall_ns: int
    before: dict[str, str | None] = field(default_factory=dict)
    after: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_reply(cls, r: dict[str, Any]) -> ExecResult:
        def files(d: dict[str, str | None]) -> dict[str, str | None]:
            return {k: (_bytes_text(v) if v is not None else None) for k, v in d.items()}

        return cls(
            rc=int(r["rc"]),
            signal=int(r["signal"]),
            timed_out=bool(r["timed_out"]),
            stdout=_bytes_text(r["stdout"]),
            stderr=_bytes_text(r["stderr"]),
            wall_ns=int(r["wall_ns"]),
            before=files(r.get("before", {})),
            after=files(r.get("after", {})),
        )


class AgentClient:
    """One connection to the guest agent; holds a lock file so only one client talks at once."""

    def __init__(self, socket_path: Path, lock_path: Path) -> None:
        self.socket_path = socket_path
        self.lock_path = lock_path
        self._sock: socket.socket | None = None
        self._lock_fd: int | None = None
        self._buf = b""
        self._ids = itertools.count(int(time.time() * 1000) % 1_000_000_000)

    def __enter__(self) -> AgentClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        self._lock_fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.socket_path))
        except OSError as e:
            sock.close()
            self.close()
            raise AgentUnavailable(
                f"cannot reach the guest agent at {self.socket_path}: {e}"
            ) from e
        self._sock = sock

    def close(self) -> None:
        if self._sock:
            self._sock.close()
            self._sock = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _send(self, op: str, payload: bytes = b"") -> int:
        assert self._sock is not None, "not connected"
        rid = next(self._ids)
        line = f"{rid} {op} ".encode() + base64.b64encode(payload or b"-") + b"\n"
        try:
            self._sock.sendall(line)
        except OSError as e:
            raise AgentUnavailable(f"the guest agent channel broke: {e}") from e
        return rid

    def _reply(
        self, rid: int, timeout: float | None, watch: Callable[[], None] | None
    ) -> dict[str, Any]:
        assert self._sock is not None, "not connected"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue  # line noise from before the agent set raw mode
                if not isinstance(msg, dict):
                    continue  # valid JSON but not a reply (e.g. a stray number): noise too
                if msg.get("id") == rid:
                    if "error" in msg:
                        raise LabError(f"guest agent: {msg['error']}")
                    return msg
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no answer from the guest agent within {timeout:.0f} s")
            if watch:
                watch()
            self._sock.settimeout(0.5)
            try:
                chunk = self._sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError as e:
                chunk = b""
                if watch:
                    watch()
                raise AgentUnavailable(f"the guest agent channel broke: {e}") from e
            if not chunk:
                if watch:  # QEMU closes the channel as it exits: give it a moment to be gone
                    # watch() raises once QEMU's exit or a panic shows; until then, keep looking
                    wait_until(lambda: bool(watch()), timeout=5)
                raise AgentUnavailable("the guest agent closed the connection")
            self._buf += chunk

    def ping(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The agent's pong (kernel release, machine), or None when it does not answer in time."""
        rid = self._send("ping")
        try:
            return self._reply(rid, timeout, None)
        except TimeoutError:
            return None

    def run(
        self,
        argv: list[str],
        timeout: float = 0,
        snapshots: list[str] | tuple[str, ...] = (),
        watch: Callable[[], None] | None = None,
    ) -> ExecResult:
        """Run ``argv`` in the guest; read ``snapshots`` files just before and after it.

        ``timeout`` (seconds, 0 = none) is enforced by the agent, which kills the job's
        process group; ``watch`` is called while waiting, to notice a guest that died.
        """
        if not argv:
            raise LabError("no command given")
        fields = [f"{timeout:g}", str(len(snapshots)), *snapshots, *argv]
        if any("\0" in f for f in fields):
            raise LabError("arguments cannot contain NUL bytes")
        payload = b"".join(f.encode() + b"\0" for f in fields)
        rid = self._send("run", payload)
        return ExecResult.from_reply(self._reply(rid, None, watch))

    def poweroff(self, timeout: float = 5.0) -> bool:
        """Ask the guest to sync and power off; True when the agent acknowledged."""
        try:
            rid = self._send("poweroff")
            self._reply(rid, timeout, None)
            return True
        except (TimeoutError, AgentUnavailable, OSError):
            return False

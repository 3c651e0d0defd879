"""The host side of the agent line protocol (lab/guest/agent.py) against a real byte stream.

A fake guest listens on a Unix socket, as QEMU's chardev does for ttyS1, reads requests with the
rules of vm/guest/lab-agent.c (``<id> <op> <base64>``, NUL-separated run fields) and answers with
lines built the way the C agent builds them (bytes >= 0x7f or < 0x20 as ``\\u00XX``). The last
test runs the real C agent on a pty, bridged to the socket, for ping and run.
"""

from __future__ import annotations

import base64
import binascii
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.guest.agent import AgentClient, AgentUnavailable
from lab.guest.image import agent_program, compile_program
from lab.parsing import parse_meminfo

REQUEST = re.compile(rb"(\d+) (ping|run|poweroff) ([A-Za-z0-9+/]+=*)\n")


def c_json_str(data: bytes) -> str:
    """A JSON string literal as lab-agent.c's buf_json_str() writes the bytes ``data``."""
    out = ['"']
    for c in data:
        if c in (0x22, 0x5C):
            out.append("\\" + chr(c))
        elif c == 0x0A:
            out.append("\\n")
        elif c < 0x20 or c >= 0x7F:
            out.append(f"\\u00{c:02x}")
        else:
            out.append(chr(c))
    return "".join(out) + '"'


def run_reply(rid: int, *, rc: int = 0, signal: int = 0, timed_out: bool = False,
              stdout: bytes = b"", stderr: bytes = b"", wall_ns: int = 1234,
              before: dict[str, bytes | None] | None = None,
              after: dict[str, bytes | None] | None = None) -> bytes:
    """A "run" reply line, field for field in do_run()'s order and format."""

    def snap(files: dict[str, bytes | None] | None) -> str:
        items = [c_json_str(k.encode()) + ":" + ("null" if v is None else c_json_str(v))
                 for k, v in (files or {}).items()]
        return "{" + ",".join(items) + "}"

    line = (
        f'{{"id":{rid},"rc":{rc},"signal":{signal},"timed_out":{str(timed_out).lower()},'
        f'"truncated":false,"wall_ns":{wall_ns},"stdout":{c_json_str(stdout)},'
        f'"stderr":{c_json_str(stderr)},"before":{snap(before)},"after":{snap(after)}}}'
    )
    return line.encode() + b"\n"


@dataclass
class Request:
    """One request line as the C agent's handle_line() splits it."""

    rid: int
    op: str
    payload: bytes
    raw: bytes

    def fields(self) -> list[str]:
        """The run payload as do_run() splits it: NUL-terminated fields."""
        assert self.payload.endswith(b"\0"), "every field is NUL-terminated"
        return [f.decode() for f in self.payload[:-1].split(b"\0")]


@dataclass
class FakeGuest:
    """A Unix-socket "guest" that hands each request to ``answer`` and writes what it returns."""

    path: Path
    answer: Callable[[Request], list[bytes]] = lambda req: []
    requests: list[Request] = field(default_factory=list)
    chunk: int = 0  # >0: write replies this many bytes at a time
    problems: list[str] = field(default_factory=list)

    def serve(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:  # the fixture closed the listener: this test never connected
            return
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    raw += b"\n"
                    m = REQUEST.fullmatch(raw)
                    if not m:
                        self.problems.append(f"malformed request {raw!r}")
                        continue
                    try:
                        payload = base64.b64decode(m.group(3), validate=True)
                    except binascii.Error:
                        self.problems.append(f"bad base64 in {raw!r}")
                        continue
                    req = Request(int(m.group(1)), m.group(2).decode(), payload, raw)
                    self.requests.append(req)
                    for out in self.answer(req):
                        if out == b"<close>":
                            return
                        step = self.chunk or len(out) or 1
                        for i in range(0, len(out), step):
                            conn.sendall(out[i:i + step])
                            if self.chunk:
                                time.sleep(0.001)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory for sockets (sun_path holds 108 bytes; pytest's tmp_path can be long)."""
    d = Path(tempfile.mkdtemp(prefix="agent-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def guest(sockdir: Path) -> Iterator[FakeGuest]:
    fake = FakeGuest(sockdir / "agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(fake.path))
    listener.listen(1)
    thread = threading.Thread(target=fake.serve, args=(listener,), daemon=True)
    thread.start()
    yield fake
    listener.close()
    thread.join(timeout=5)
    assert not fake.problems, fake.problems


def client(fake: FakeGuest) -> AgentClient:
    return AgentClient(fake.path, fake.path.with_name("agent.lock"))


def pong(req: Request) -> bytes:
    return (f'{{"id":{req.rid},"pong":true,"pid":1,"release":"6.1.0-28-686-pae",'
            f'"machine":"i686"}}\n').encode()


# --- requests ---------------------------------------------------------------------------------


def test_ping_request_and_reply(guest: FakeGuest) -> None:
    guest.answer = lambda req: [pong(req)]
    with client(guest) as c:
        reply = c.ping()
    assert reply == {"id": guest.requests[0].rid, "pong": True, "pid": 1,
                     "release": "6.1.0-28-686-pae", "machine": "i686"}
    (req,) = guest.requests
    assert req.op == "ping"
    assert req.raw == f"{req.rid} ping LQ==\n".encode(), "an empty payload is sent as '-'"


def test_run_request_fields(guest: FakeGuest) -> None:
    """The payload do_run() expects: timeout, n_snapshots, the paths, then argv."""
    guest.answer = lambda req: [run_reply(req.rid)]
    argv = ["/workloads/forkstorm", "--procs", "50", "two words", "µs"]
    with client(guest) as c:
        c.run(argv, timeout=2.5, snapshots=["/proc/meminfo", "/proc/vmstat"])
        c.run(["true"])
    first, second = guest.requests
    assert first.op == second.op == "run"
    assert first.fields() == ["2.5", "2", "/proc/meminfo", "/proc/vmstat", *argv]
    assert second.fields() == ["0", "0", "true"]
    assert second.rid > first.rid, "ids grow, so a late reply cannot match a new request"


@pytest.mark.parametrize("argv", [[], ["echo", "a\0b"]])
def test_run_refuses_what_the_agent_cannot_carry(guest: FakeGuest, argv: list[str]) -> None:
    with client(guest) as c, pytest.raises(LabError, match="no command|NUL"):
        c.run(argv)
    assert guest.requests == [], "nothing was sent"


# --- replies ----------------------------------------------------------------------------------


def test_run_reply_bytes_come_back_exactly(guest: FakeGuest, data_dir: Path) -> None:
    """Snapshots and output cross as \\u00XX-escaped bytes and come back as the same text."""
    meminfo = (data_dir / "meminfo.txt").read_bytes()
    out = "ops 50 µs ✓\ttab \"q\" \\ back\n".encode()
    guest.answer = lambda req: [run_reply(
        req.rid, rc=3, stdout=out, stderr=b"bad \xff byte\n", wall_ns=987654321,
        before={"/proc/meminfo": meminfo, "/sys/missing": None},
        after={"/proc/meminfo": meminfo.replace(b"8186840", b"8186000")},
    )]
    with client(guest) as c:
        res = c.run(["x"], snapshots=["/proc/meminfo", "/sys/missing"])
    assert res.stdout == out.decode()
    assert res.stderr == "bad \ufffd byte\n", "invalid UTF-8 becomes U+FFFD, nothing is lost"
    assert (res.rc, res.signal, res.timed_out, res.wall_ns) == (3, 0, False, 987654321)
    assert res.before["/sys/missing"] is None, "an unreadable file is null, not empty"
    assert res.before["/proc/meminfo"] == meminfo.decode()
    assert parse_meminfo(res.before["/proc/meminfo"] or "")["MemFree"] == 8186840
    assert parse_meminfo(res.after["/proc/meminfo"] or "")["MemFree"] == 8186000


def test_killed_job(guest: FakeGuest) -> None:
    """The agent's timeout: rc -1, SIGKILL, timed_out."""
    guest.answer = lambda req: [run_reply(req.rid, rc=-1, signal=9, timed_out=True)]
    with client(guest) as c:
        res = c.run(["sleep", "100"], timeout=1)
    assert (res.rc, res.signal, res.timed_out) == (-1, 9, True)


def test_noise_stale_replies_and_split_lines_are_skipped(guest: FakeGuest) -> None:
    """Console noise before raw mode, a pong from the boot wait, a line cut in 7-byte pieces."""
    guest.chunk = 7
    guest.answer = lambda req: [
        b"\x1b[0mlab-agent: serving on /dev/ttyS1\r\n",
        b"{not json\n",
        b"[1]\n",  # valid JSON that is not a reply object
        b"5\n",
        f'{{"id":{req.rid - 1},"pong":true}}\n'.encode(),
        b"\n",
        run_reply(req.rid, stdout=b"mine\n"),
    ]
    with client(guest) as c:
        res = c.run(["echo", "mine"])
    assert res.stdout == "mine\n"


def test_two_replies_in_one_chunk(guest: FakeGuest) -> None:
    """A reply that arrives early (with the previous one) waits in the buffer for its request."""
    def answer(req: Request) -> list[bytes]:
        if len(guest.requests) == 1:
            return [pong(req) + pong(Request(req.rid + 1, "ping", b"", b""))]
        return []

    guest.answer = answer
    with client(guest) as c:
        assert c.ping() is not None
        assert c.ping(timeout=0.5) is not None, "the second pong was already buffered"


def test_error_reply_is_a_lab_error(guest: FakeGuest) -> None:
    guest.answer = lambda req: [f'{{"id":{req.rid},"error":"malformed run request"}}\n'.encode()]
    with client(guest) as c, pytest.raises(LabError, match="guest agent: malformed run request"):
        c.run(["x"])


# --- timeouts and a lost guest ---------------------------------------------------------------


def test_silent_agent_times_out(guest: FakeGuest) -> None:
    with client(guest) as c:
        t0 = time.monotonic()
        assert c.ping(timeout=0.3) is None
        assert c.poweroff(timeout=0.3) is False
        assert time.monotonic() - t0 < 3
    assert [r.op for r in guest.requests] == ["ping", "poweroff"]


def test_poweroff_acknowledged(guest: FakeGuest) -> None:
    guest.answer = lambda req: [f'{{"id":{req.rid},"ok":true}}\n'.encode()]
    with client(guest) as c:
        assert c.poweroff() is True


def test_guest_closing_the_channel(guest: FakeGuest) -> None:
    guest.answer = lambda req: [b'{"id":1,"half', b"<close>"]
    with client(guest) as c, pytest.raises(AgentUnavailable, match="closed the connection"):
        c.run(["x"])


def test_watch_sees_a_dead_guest(guest: FakeGuest) -> None:
    """While a job runs the host keeps checking the guest; its verdict ends the wait."""
    calls = []

    def watch() -> None:
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise LabError("guest lost: Kernel panic")

    with client(guest) as c, pytest.raises(LabError, match="Kernel panic"):
        c.run(["sleep", "100"], watch=watch)
    assert len(calls) == 3


def test_nothing_listening(sockdir: Path) -> None:
    c = AgentClient(sockdir / "none.sock", sockdir / "lock")
    with pytest.raises(AgentUnavailable, match="cannot reach the guest agent"):
        c.connect()
    assert c._lock_fd is None, "the lock is released when the connection fails"


# --- the real C agent, on a pty ---------------------------------------------------------------


@pytest.fixture
def real_agent(sockdir: Path, tmp_path: Path) -> Iterator[Path]:
    """vm/guest/lab-agent.c built as the image builds it, serving on a pty whose master is
    bridged to a Unix socket. The bridge drops any poweroff: the agent would call reboot()."""
    binary = tmp_path / "lab-agent"
    compile_program(agent_program(), binary)
    master, slave = pty.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([str(binary), os.ttyname(slave)], stderr=subprocess.PIPE,
                            start_new_session=True)
    path = sockdir / "real.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    dropped: list[bytes] = []

    def bridge() -> None:
        try:
            shuttle()
        except OSError:
            pass  # the agent was killed: EIO on the master

    def shuttle() -> None:
        conn, _ = listener.accept()
        pending = b""
        with conn:
            while True:
                ready, _, _ = select.select([conn, master], [], [], 10)
                if not ready:
                    return
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        if b" poweroff " in line:
                            dropped.append(line)
                            continue
                        os.write(master, line + b"\n")
                if master in ready:
                    conn.sendall(os.read(master, 65536))

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        proc.kill()  # it ignores SIGTERM, as PID 1 must
        proc.wait(timeout=10)
        listener.close()
        os.close(master)
        os.close(slave)
        thread.join(timeout=15)
    assert not dropped


def test_real_agent_ping_and_run(real_agent: Path, data_dir: Path) -> None:
    with AgentClient(real_agent, real_agent.with_name("real.lock")) as c:
        reply = None
        for _ in range(20):  # the agent may not have opened the pty yet
            reply = c.ping(timeout=0.5)
            if reply:
                break
        assert reply and reply["pong"] is True
        assert reply["machine"] == os.uname().machine and reply["pid"] > 1
        meminfo = str(data_dir / "meminfo.txt")
        res = c.run(["sh", "-c", "printf 'µs \\001\\n'; echo oops >&2; exit 7"],
                    timeout=30, snapshots=[meminfo, "/nonexistent"])
        assert (res.rc, res.signal, res.timed_out) == (7, 0, False)
        assert res.stdout == "µs \x01\n" and res.stderr == "oops\n"
        assert res.before[meminfo] == res.after[meminfo] == Path(meminfo).read_text()
        assert res.before["/nonexistent"] is None
        assert res.wall_ns > 0
        res = c.run(["sleep", "30"], timeout=0.5)
        assert res.timed_out and res.signal == 9
        with pytest.raises(LabError, match="malformed run request"):
            c._reply(c._send("run", b"5\0"), 10, None)

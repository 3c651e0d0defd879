"""Reading the ebpf backend's pinned maps, as the guest agent dumps them, into counts,
folded stacks and log2 histograms.

The agent prints one ``KEYHEX VALUE`` line per map entry (vm/guest/lab-agent.c): the key's
bytes in hex, the value in decimal when it is 8 bytes (summed over CPUs for per-CPU maps),
else its bytes in hex. Keys and values are little-endian (the guest is i386). Pure functions,
tested on captured dumps.
"""

from __future__ import annotations

import bisect
import struct

__all__ = ["parse_map_dump", "parse_stack_map", "kallsyms_table", "symbolise", "folded_stacks",
           "log2_hist"]


def _key(hexkey: str) -> int:
    return int.from_bytes(bytes.fromhex(hexkey), "little")


def parse_map_dump(text: str) -> dict[int, int]:
    """A dump of a map with integer keys and 8-byte values → {key: value}."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[_key(parts[0])] = int(parts[1])
    return out


def parse_stack_map(text: str) -> dict[int, list[int]]:
    """A dump of the stack-trace map → {stack id: [ip, ...] innermost first}."""
    out: dict[int, list[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[1].isdigit():
            continue
        raw = bytes.fromhex(parts[1])
        ips = [ip for (ip,) in struct.iter_unpack("<Q", raw[: len(raw) // 8 * 8])]
        out[_key(parts[0])] = [ip for ip in ips if ip]
    return out


def kallsyms_table(text: str) -> list[tuple[int, str]]:
    """/proc/kallsyms → [(address, name)] of text symbols, sorted (for :func:`symbolise`)."""
    table = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW":
            name = parts[2] + (f" {parts[3]}" if len(parts) > 3 else "")
            table.append((int(parts[0], 16), name))
    table.sort()
    return table


def symbolise(ip: int, table: list[tuple[int, str]]) -> str:
    """The symbol holding ``ip`` (the nearest one at or below it), or its address in hex."""
    i = bisect.bisect_right(table, (ip, "\U0010ffff")) - 1
    return table[i][1] if i >= 0 and table[i][0] else f"0x{ip:x}"


def folded_stacks(before: str, after: str, stack_map: str,
                  table: list[tuple[int, str]]) -> dict[str, int]:
    """Hits per stack over the run, as folded stacks (``outer;...;probed`` → count).

    Stacks that differ only in offsets within functions fold into one line, as flame graphs
    draw them."""
    b, a = parse_map_dump(before), parse_map_dump(after)
    ips = parse_stack_map(stack_map)
    out: dict[str, int] = {}
    for sid, n in a.items():
        n -= b.get(sid, 0)
        if n <= 0:
            continue
        frames = [symbolise(ip, table) for ip in reversed(ips.get(sid, []))] or ["[lost]"]
        key = ";".join(frames)
        out[key] = out.get(key, 0) + n
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def log2_hist(before: str, after: str) -> dict[int, int]:
    """The latency map's slots over the run: {log2 slot: count}, empty slots left out; slot
    ``k`` holds durations in [2^k, 2^(k+1)) ns (slot 0 also holds 0)."""
    b, a = parse_map_dump(before), parse_map_dump(after)
    return {k: v - b.get(k, 0) for k, v in sorted(a.items()) if v - b.get(k, 0)}

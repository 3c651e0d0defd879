"""One way to wait for something: poll a predicate until it holds or time runs out.

Why one helper: waiting loops (a guest's console settling after QEMU died, the agent answering
after boot, QEMU going away after the agent channel closed) each had their own deadline
arithmetic and sleep. They differ only in what they check, so that is all they should say.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2) -> T | None:
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds
    have passed (None). It is always called at least once, and once more at the deadline's
    edge; exceptions it raises propagate (that is how a watched guest reports it is lost)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)

"""The QEMU watchdog: SIGKILL a guest as soon as the process that owns it is gone.

``python -m lab.guest.watchdog OWNER OWNER_TICKS QEMU QEMU_TICKS``, started by
``lab.guest.qemu.spawn_qemu`` when PR_SET_PDEATHSIG cannot be used (QEMU started from a thread
other than the main one, e.g. in a Dask worker: pdeathsig fires when the forking *thread*
exits). It polls both processes by (pid, start ticks) (see ``procident``: immune to wall-clock
steps, and a recycled pid is never taken for either), and ends when QEMU ends. It imports only
the standard library and ``procident``: one per guest, it should be small.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from .procident import is_running

#: How often the owner is checked: QEMU outlives a SIGKILLed owner by at most this much.
POLL_SECONDS = 0.25


def watch(owner: int, owner_ticks: int, qemu: int, qemu_ticks: int) -> None:
    """Return when QEMU has exited; kill it first if the owner goes away."""
    while is_running(qemu, qemu_ticks):
        if not is_running(owner, owner_ticks):
            if is_running(qemu, qemu_ticks):  # still the same process: never kill a new one
                try:
                    os.kill(qemu, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    owner, owner_ticks, qemu, qemu_ticks = (int(a) for a in argv)
    watch(owner, owner_ticks, qemu, qemu_ticks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

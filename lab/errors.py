"""The lab's error family: library code raises these, only the CLI turns them into exit codes."""

from __future__ import annotations

__all__ = [
    "LabError",
    "UsageError",
    "MissingPackageError",
    "GuestLostError",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "EXIT_GUEST_LOST",
    "EXIT_INTERRUPTED",
]

EXIT_RUNTIME = 1
EXIT_USAGE = 2
#: The guest panicked, oopsed, hung or vanished: distinct so scripts can tell it from a lab bug.
EXIT_GUEST_LOST = 3
EXIT_INTERRUPTED = 130


class LabError(Exception):
    """A runtime failure with a one-line explanation for the user (exit 1)."""

    exit_code = EXIT_RUNTIME


class UsageError(LabError):
    """Bad user input: unknown names, malformed sizes, out-of-bounds parameters (exit 2)."""

    exit_code = EXIT_USAGE


class MissingPackageError(LabError):
    """A host tool is missing; the message names the Debian package that provides it."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"{tool} not found: install the Debian package '{package}' (see README, set-up)"
        )
        self.tool = tool
        self.package = package


class GuestLostError(LabError):
    """The guest panicked, oopsed, hung or died; carries the console log path (exit 3)."""

    exit_code = EXIT_GUEST_LOST

    def __init__(self, reason: str, console_log: str | None = None) -> None:
        where = f" (console log: {console_log})" if console_log else ""
        super().__init__(f"guest lost: {reason}{where}")
        self.reason = reason
        self.console_log = console_log

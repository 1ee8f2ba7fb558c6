"""The one exception type vox_sandboxes raises."""

from __future__ import annotations


class SandboxError(Exception):
    """A sandbox could not be created, found or removed; the message is meant for the user.

    ``str()`` carries the tail of uv's output, for logs; ``summary`` is the same error without
    it, for a server to send to clients (tool logs name paths and other users' packages).
    """

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary if summary is not None else message


def uv_failed(adapter: str, what: str, code: int, output: str) -> SandboxError:
    """uv exited ``code``: the message has its ``output``, the summary only what it means."""
    prefix = f"could not create the sandbox for {adapter}"
    cause = " (no space left on device)" if "No space left on device" in output else ""
    return SandboxError(
        f"{prefix}: {what} exited {code}: {output}",
        f"{prefix}: {what} exited {code}{cause}; the server log has its output",
    )

"""How a runner request fails: the runner died, answered Error, or answered the wrong frame.

Re-exported by runner_client, where callers import them from.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from vox_protocol import RunnerMessage

from vox_control.errors import UpstreamFailed, VoxError, error_type


class RunnerDied(UpstreamFailed):
    """The runner process exited (or broke the protocol) while requests were in flight.

    Its stderr tail is ``detail``: the server log shows it, clients never see it (it names
    model paths, pids, other requests' work).
    """

    code = "runner_died"

    def __init__(self, name: str, returncode: int | None, stderr_tail: Sequence[str]) -> None:
        self.name = name
        self.returncode = returncode
        self.stderr_tail = list(stderr_tail)
        tail = "\n".join(f"  | {line}" for line in self.stderr_tail[-20:])
        super().__init__(
            f"the runner for {name} stopped (exit code {returncode}); "
            "it will be restarted on the next request",
            detail=f"runner stderr:\n{tail}" if tail else "runner stderr: no output",
        )


class RunnerStalled(RunnerDied):
    """The watchdog killed a busy runner that had sent nothing for too long."""

    status = 504
    code = "runner_timeout"

    def __init__(self, name: str, silent_s: float, stderr_tail: Sequence[str]) -> None:
        super().__init__(name, -signal.SIGKILL, stderr_tail)
        self.silent_s = silent_s
        self.message = (
            f"the runner for {name} stopped responding ({silent_s:.0f}s without a frame while "
            "busy) and was killed; it will be restarted on the next request"
        )
        self.args = (self.message,)


# Runner error codes -> HTTP status. bad_request/unsupported are the caller's fault.
_RUNNER_STATUS = {
    "bad_request": 400,
    "unsupported": 400,
    "cancelled": 499,
    "not_loaded": 503,
    "load_failed": 500,
    "inference_failed": 500,
    "version_mismatch": 500,
    "protocol": 502,
    "internal": 500,
}


class RunnerRequestError(VoxError):
    """The runner answered a request with an Error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = _RUNNER_STATUS.get(code, 500)
        self.type = error_type(self.status)


class UnexpectedReply(RunnerRequestError):
    """The runner answered a request with a frame of the wrong kind (a protocol fault)."""

    def __init__(self, name: str, expected: type[RunnerMessage], got: RunnerMessage) -> None:
        super().__init__(
            "protocol",
            f"runner for {name} answered {type(got).__name__} where {expected.__name__} was due",
        )

"""One error vocabulary: the VoxError root every domain error derives from, and classify().

``classify(exc)`` turns any exception (ours, Litestar's, msgspec's, the sandboxes', a bug) into
one ``Problem``: status, OpenAI ``type``, ``code``, a clean client-facing ``message``, ``param``,
headers, and a ``detail`` that only the server log sees (runner stderr, uv logs, tracebacks).
Each transport renders a Problem in its own shape (vox_control.renderers). This module imports
nothing from vox_control, so every layer (store, scheduler, runner client) can raise from it.
"""

from __future__ import annotations

import dataclasses
import re
import traceback
from collections.abc import Mapping
from typing import Any

import msgspec
from vox_sandboxes import SandboxError

# A client-facing message is one line of bounded length: whatever follows belongs in the log.
MAX_MESSAGE = 300


class VoxError(Exception):
    """An error a client can act on: its status, OpenAI error type, code and parameter.

    ``detail`` is for the server log only (runner stderr, tool output): never sent to clients.
    """

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        # Sent with the error response: Retry-After on 429/503, for instance.
        self.headers = dict(headers or {})
        self.detail = detail


class BadRequest(VoxError):
    status = 400


class ModelNotFound(VoxError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"

    def __init__(self, message: str, *, param: str | None = "model") -> None:
        super().__init__(message, param=param)


class PayloadTooLarge(VoxError):
    status = 413
    code = "payload_too_large"


class Unprocessable(VoxError):
    """Well-formed, but a value this server cannot act on (a rate the codec cannot carry)."""

    status = 422
    code = "unprocessable"


class Unavailable(VoxError):
    status = 503
    type = "server_error"
    code = "unavailable"


class Overloaded(VoxError):
    """Too many requests queued for a model; Retry-After says when to try again."""

    status = 429
    type = "rate_limit_error"
    code = "queue_full"


class ServerFault(VoxError):
    """The server (not the request) failed: the base of the 5xx domain errors."""

    status = 500
    type = "server_error"
    code = "internal_error"


class LoadError(ServerFault):
    """A runner could not be started or could not load its model (raised by the scheduler)."""

    code = "load_failed"

    @classmethod
    def because(cls, what: str, cause: BaseException) -> LoadError:
        """``what`` failed because of ``cause``: its clean message shown, its detail logged."""
        if isinstance(cause, TimeoutError):
            reason = "timed out"
        elif isinstance(cause, VoxError):
            reason = f"{cause.code}: {clean(cause.message)}"
        else:
            reason = type(cause).__name__
        detail = getattr(cause, "detail", None) or str(cause)
        return cls(f"{what}: {reason}", detail=detail)


class UpstreamFailed(ServerFault):
    """The runner process failed (crashed, or its adapter raised)."""

    status = 502
    code = "upstream_failed"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One classified error, what every transport renders (and logs) from."""

    status: int
    type: str
    code: str
    message: str
    param: str | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    detail: str | None = None  # server log only
    close_code: int | None = None  # a session protocol's own close code, when it names one

    @property
    def retry_after_s(self) -> float | None:
        value = self.headers.get("Retry-After")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


# Codes for Litestar's own HTTP exceptions (routing, body limits, auth).
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}
_JSON_PATH = re.compile(r"`\$\.([A-Za-z_][\w.\[\]]*)`")


def clean(message: str) -> str:
    """A message safe to show: its first line, bounded (the rest is a log's business)."""
    first = message.strip().split("\n", 1)[0].strip()
    return first if len(first) <= MAX_MESSAGE else first[: MAX_MESSAGE - 3] + "..."


def error_type(status: int) -> str:
    return "invalid_request_error" if status < 500 else "server_error"


def classify(exc: BaseException) -> Problem:
    """The one decision of whose fault an exception is and what the client is told."""
    if isinstance(exc, VoxError):
        return Problem(
            status=exc.status,
            type=exc.type,
            code=exc.code,
            message=clean(exc.message),
            param=exc.param,
            headers=exc.headers,
            detail=exc.detail,
            close_code=getattr(exc, "close_code", None),
        )
    if isinstance(exc, SandboxError):
        # uv's log follows the first line; it is for the operator, not the client.
        text = str(exc)
        summary = text.split(": uv exited", 1)[0] if ": uv exited" in text else text
        return Problem(503, "server_error", "sandbox_unavailable", clean(summary), detail=text)
    # Imported here, not at the top: `vox serve` starts the preloaded runners before Litestar
    # (about 0.11 s of imports) loads beside them, and every layer imports this module.
    from litestar.exceptions import HTTPException, ValidationException

    if isinstance(exc, HTTPException):
        status = exc.status_code
        message = str(exc.detail)
        if isinstance(exc, ValidationException) and exc.extra:
            message = f"{exc.detail}: {exc.extra}"
        code = _HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
        return Problem(status, error_type(status), code, clean(message), headers=exc.headers or {})
    if isinstance(exc, msgspec.ValidationError):
        found = _JSON_PATH.search(str(exc))
        param = found.group(1) if found else None
        return Problem(400, "invalid_request_error", "invalid_request", clean(str(exc)), param)
    if isinstance(exc, msgspec.DecodeError):
        return Problem(400, "invalid_request_error", "invalid_json", clean(str(exc)))
    if isinstance(exc, RecursionError):
        # Deeply nested JSON (msgspec stops at its depth limit): the input's fault.
        message = "the request is nested too deeply"
        return Problem(400, "invalid_request_error", "invalid_json", message, detail=repr(exc))
    if isinstance(exc, ValueError) and "null" in str(exc).lower():
        # "embedded null byte" from os/subprocess calls given a client's string.
        message = "the request contains a NUL character"
        return Problem(400, "invalid_request_error", "invalid_request", message, detail=repr(exc))
    return Problem(
        500,
        "server_error",
        "internal_error",
        "internal server error; the server log has the details",
        # A bug: the traceback is what the operator needs.
        detail="".join(traceback.format_exception(exc)).rstrip(),
    )


def error_body(
    message: str,
    type_: str,
    *,
    param: str | None = None,
    code: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error envelope, used by every route so clients parse one shape.

    The request id sits beside ``error``, whose keys stay exactly OpenAI's.
    """
    body: dict[str, Any] = {
        "error": {"message": message, "type": type_, "param": param, "code": code}
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body

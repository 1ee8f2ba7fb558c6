"""One renderer per transport for a classified Problem, and the request id every error carries.

Transports: an HTTP JSON response (the native and OpenAI routes share OpenAI's envelope), an
SSE ``data:`` event and an NDJSON line (streams that already answered 200), a WebSocket
``error`` event with its close code (docs/streaming.md), the Pipecat realtime ``error``
event (sessions/pipecat_wire.py's vocabulary), and the Wyoming ``error`` event (text, code).
Each renderer logs the problem once with its request id and the server-only detail, so a
client's request id finds the cause in the log.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from vox_control.errors import Problem, classify, error_body
from vox_control.logs import request_id as request_id_var

log = logging.getLogger("vox.errors")

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_STATE_KEY = "vox_request_id"
# One context variable for the request id: the log formatter stamps it on every line.
_current = request_id_var

# WebSocket close codes (docs/streaming.md lists each with the error codes that use it).
WS_NORMAL = 1000
WS_INTERNAL = 1011
WS_TRY_LATER = 1013  # the model's queue is full: the client may retry
WS_BAD_CONFIG = 4400
WS_MODEL_NOT_FOUND = 4404
WS_TOO_LARGE = 4413
# Client-side codes the streaming protocol names; any other 4xx is its generic invalid_config.
_WS_CLIENT_CODES = frozenset(
    {"model_not_found", "bad_request", "unsupported", "invalid_audio", "queue_full"}
)

# The Pipecat peers' codes and their OpenAI Realtime error types (their own table).
REALTIME_TYPES = {
    "invalid_json": "invalid_request_error",
    "invalid_event": "invalid_request_error",
    "unsupported_event": "invalid_request_error",
    "invalid_config": "invalid_request_error",
    "buffer_empty": "invalid_request_error",
    "buffer_overflow": "invalid_request_error",
    "payload_too_large": "invalid_request_error",
    "unsupported_format": "invalid_request_error",
    "model_not_found": "invalid_request_error",
    "busy": "rate_limit_error",
    "unauthorized": "authentication_error",
    "backend_error": "server_error",
    "internal_error": "server_error",
}


# ---------------------------------------------------------------------- request ids


def sane_request_id(value: str | None) -> str | None:
    """A client's X-Request-Id when it is short and plain (it ends up in logs and bodies)."""
    return value if value is not None and _SANE_ID.fullmatch(value) else None


def scope_request_id(scope: Scope) -> str:
    """This connection's request id: the client's if sane, else a new one; made once."""
    state: dict[str, Any] = scope["state"]
    rid = state.get(_STATE_KEY)
    if not isinstance(rid, str):
        sent = dict(scope.get("headers") or []).get(b"x-request-id", b"")
        rid = sane_request_id(sent.decode("latin-1")) or f"req_{uuid.uuid4().hex}"
        state[_STATE_KEY] = rid
    return rid


def current_request_id() -> str | None:
    """The request id of the request or session this task serves (None outside one)."""
    return _current.get()


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Makes the request id visible to every task the handler starts (sessions, streams)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        token = _current.set(scope_request_id(scope))
        try:
            await app(scope, receive, send)
        finally:
            _current.reset(token)

    return middleware


async def request_id_header(message: Message, scope: Scope) -> None:
    """before_send hook: every response and WebSocket accept names its request id."""
    if message["type"] in ("http.response.start", "websocket.accept"):
        headers = MutableScopeHeaders.from_message(message)
        headers[REQUEST_ID_HEADER] = scope_request_id(scope)


# ---------------------------------------------------------------------- logging


def report(problem: Problem, where: str, request_id: str | None) -> None:
    """The server log's line for one problem: server faults with their full detail."""
    stamp = {"request_id": request_id} if request_id else {}
    if problem.status >= 500:
        extra = f"\n{problem.detail}" if problem.detail else ""
        log.error("%s: %s %s%s", where, problem.code, problem.message, extra, extra=stamp)
    else:
        log.info("%s: %s %s", where, problem.code, problem.message, extra=stamp)


# ---------------------------------------------------------------------- HTTP


def envelope(problem: Problem, request_id: str | None) -> dict[str, Any]:
    """OpenAI's error envelope (native routes answer the same shape)."""
    return error_body(
        problem.message,
        problem.type,
        param=problem.param,
        code=problem.code,
        request_id=request_id,
    )


def http_response(problem: Problem, request_id: str | None) -> Response[Any]:
    headers = {**problem.headers}
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    return Response(
        content=envelope(problem, request_id),
        status_code=problem.status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The app's one exception handler: classify, log, render."""
    problem = classify(exc)
    rid = scope_request_id(request.scope)
    report(problem, f"{request.method} {request.url.path}", rid)
    return http_response(problem, rid)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {Exception: exception_handler}


# ---------------------------------------------------------------------- streams after 200


def stream_problem(exc: BaseException, where: str) -> tuple[Problem, str | None]:
    problem = classify(exc)
    rid = current_request_id()
    report(problem, where, rid)
    return problem, rid


def sse_error(exc: BaseException) -> bytes:
    """An SSE ``data:`` event with the envelope (the openai SDK raises it as APIError)."""
    problem, rid = stream_problem(exc, "sse stream")
    return b"data: " + msgspec.json.encode(envelope(problem, rid)) + b"\n\n"


def ndjson_error(exc: BaseException) -> bytes:
    """The last line of an NDJSON stream (the native pull), as Ollama's pull ends on error."""
    problem, rid = stream_problem(exc, "ndjson stream")
    return msgspec.json.encode({"status": "error", **envelope(problem, rid)}) + b"\n"


# ---------------------------------------------------------------------- WebSocket streams


def ws_code(problem: Problem) -> str:
    """The streaming protocol's code: its own codes verbatim, generic 4xx as invalid_config."""
    if problem.close_code is not None or problem.status >= 500:
        return problem.code
    return problem.code if problem.code in _WS_CLIENT_CODES else "invalid_config"


def ws_close_code(problem: Problem) -> int:
    if problem.close_code is not None:
        return problem.close_code
    if problem.code == "model_not_found":
        return WS_MODEL_NOT_FOUND
    if problem.status == 413:
        return WS_TOO_LARGE
    if problem.status == 429:
        return WS_TRY_LATER
    return WS_BAD_CONFIG if problem.status < 500 else WS_INTERNAL


def ws_error(problem: Problem) -> tuple[dict[str, Any], int]:
    """The streaming ``error`` event and the close code that follows it."""
    rid = current_request_id()
    report(problem, "stream session", rid)
    close = ws_close_code(problem)
    event: dict[str, Any] = {"type": "error", "code": ws_code(problem), "message": problem.message}
    if problem.param:
        event["param"] = problem.param
    event["close_code"] = close
    if rid is not None:
        event["request_id"] = rid
    return event, close


# ---------------------------------------------------------------------- Pipecat realtime


def realtime_code(problem: Problem) -> str:
    """The peers' code: theirs verbatim, a full queue as busy, else by whose fault it is."""
    if problem.code in REALTIME_TYPES:
        return problem.code
    if problem.status == 429:
        return "busy"
    return "invalid_config" if problem.status < 500 else "backend_error"


def realtime_retry_after_ms(problem: Problem) -> int | None:
    seconds = problem.retry_after_s
    if seconds is None:
        return 1000 if problem.status == 429 else None
    return max(1, round(seconds * 1000))


def realtime_error(
    problem: Problem, event_id: str, *, client_event_id: str | None = None
) -> dict[str, Any]:
    """The peers' ``error`` event: correlation and retry hint both nested and top level."""
    rid = current_request_id()
    report(problem, "realtime session", rid)
    error = realtime_error_object(problem)
    event: dict[str, Any] = {"type": "error", "event_id": event_id, "error": error}
    if client_event_id:
        error["event_id"] = client_event_id
        event["previous_event_id"] = client_event_id
    retry_after_ms = realtime_retry_after_ms(problem)
    if retry_after_ms is not None:
        error["retry_after_ms"] = retry_after_ms
        event["retry_after_ms"] = retry_after_ms
    return event


def realtime_error_object(problem: Problem) -> dict[str, Any]:
    """The ``error`` object the peers nest in error events and in failed transcriptions."""
    code = realtime_code(problem)
    error: dict[str, Any] = {
        "type": REALTIME_TYPES.get(code, "server_error"),
        "code": code,
        "message": problem.message,
    }
    rid = current_request_id()
    if rid is not None:
        error["request_id"] = rid
    return error


# ---------------------------------------------------------------------- OpenAI Realtime


def oai_realtime_error(problem: Problem, client_event_id: str | None) -> dict[str, Any]:
    """OpenAI Realtime's ``error`` event: the SDK's RealtimeError shape, the client's
    event id (when the failing event had one) to correlate."""
    rid = current_request_id()
    report(problem, "openai realtime session", rid)
    error: dict[str, Any] = {
        "type": "invalid_request_error" if problem.status < 500 else "server_error",
        "code": problem.code,
        "message": problem.message,
        "param": problem.param,
        "event_id": client_event_id,
    }
    if rid is not None:
        error["request_id"] = rid
    return {"type": "error", "event_id": f"evt_{uuid.uuid4().hex[:16]}", "error": error}


# ---------------------------------------------------------------------- Wyoming


def wyoming_error(exc: BaseException) -> tuple[str, str]:
    """The Wyoming ``error`` event's text and code: the message with the session's id (the
    protocol has no field for it), and Vox's own code (model_not_found, queue_full, ...)."""
    problem, rid = stream_problem(exc, "wyoming session")
    return problem.message + (f" (request {rid})" if rid else ""), problem.code

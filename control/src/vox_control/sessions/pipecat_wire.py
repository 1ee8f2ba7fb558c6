"""What both realtime protocols share: the transport seam, ids, error events, busy mapping."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Protocol

from vox_control import __version__
from vox_control.audio.resample import ToRate
from vox_control.errors import BadRequest, Overloaded, VoxError, classify
from vox_control.renderers import (
    REALTIME_TYPES,
    current_request_id,
    realtime_code,
    realtime_error,
    realtime_error_object,
    realtime_retry_after_ms,
    report,
    ws_close_code,
)
from vox_control.scheduler.scheduled import LoadedModel
from vox_control.services import Services
from vox_control.sessions.channel import ClientGone
from vox_control.validation import check_json_depth

__all__ = ["ClientGone", "Transport"]

PROTOCOL_VERSION = "0.1"  # both published peers speak 0.1
AUDIO_FORMAT = "pcm16"
# Answer to a commit refused because this connection already has a response in flight.
BUSY_RETRY_AFTER_MS = 250
STARTED = time.monotonic()  # server uptime for server.status (this module loads at start)

# OpenAI Realtime's coarse error types for each code (the peers' own table).
ERROR_TYPES = REALTIME_TYPES


class Transport(Protocol):
    """One client connection: frames in, JSON events out (streaming.channel.Channel fits)."""

    async def receive(self) -> str | bytes:
        """The next frame; raises ClientGone when the client is gone."""
        ...

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send one JSON text frame; raises ClientGone when the client is gone."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class PcmFramer:
    """pcm16 chunks at any rate -> gapless frames of ``frame_ms`` at ``rate``.

    The advertised rate is a contract: audio at another rate is converted, never relabelled.
    """

    def __init__(self, rate: int, frame_ms: int) -> None:
        self.rate = rate
        self.frame_bytes = rate * frame_ms // 1000 * 2
        self.samples = 0  # at ``rate``, everything pushed so far
        self._carry = bytearray()
        self._to_rate = ToRate(rate)

    def push(self, pcm: bytes, rate: int) -> list[bytes]:
        if rate != self.rate:
            pcm = self._to_rate.push(pcm, rate)
        self.samples += len(pcm) // 2
        self._carry.extend(pcm)
        frames = []
        while len(self._carry) >= self.frame_bytes:
            frames.append(bytes(self._carry[: self.frame_bytes]))
            del self._carry[: self.frame_bytes]
        return frames

    def tail(self) -> bytes:
        """What is left: the last, shorter frame."""
        tail = bytes(self._carry)
        self._carry.clear()
        return tail


class ProtocolError(VoxError):
    """A client mistake answered with an ``error`` event; the session goes on."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after_ms: int | None = None,
        detail: str | None = None,
    ) -> None:
        headers = {} if retry_after_ms is None else {"Retry-After": str(retry_after_ms / 1000)}
        super().__init__(message, code=code, headers=headers, detail=detail)
        self.retry_after_ms = retry_after_ms
        self.client_event_id: str | None = None  # the event it answers, when it named one
        if code == "busy":
            self.status, self.type = 429, "rate_limit_error"
        elif ERROR_TYPES.get(code, "server_error") == "server_error":
            self.status, self.type = 500, "server_error"


class SessionRefused(VoxError):
    """The session cannot start (unknown model, load failure): error event, then close."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message, code=code)
        self.close_code = close_code


def event_id() -> str:
    return f"evt_{uuid.uuid4().hex[:16]}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def error_object(code: str, message: str) -> dict[str, Any]:
    return realtime_error_object(classify(ProtocolError(code, message)))


def error_event(
    code: str,
    message: str,
    *,
    client_event_id: str | None = None,
    retry_after_ms: int | None = None,
) -> dict[str, Any]:
    """The peers' ``error`` event (renderers.realtime_error), with this server event's id."""
    problem = classify(ProtocolError(code, message, retry_after_ms=retry_after_ms))
    return realtime_error(problem, event_id(), client_event_id=client_event_id)


def parse(frame: str) -> dict[str, Any]:
    """A text frame as a JSON object with a string ``type``."""
    try:
        check_json_depth(frame)
    except BadRequest as exc:
        raise ProtocolError("invalid_json", exc.message) from None
    try:
        message = json.loads(frame)
    except json.JSONDecodeError as exc:  # nesting was bounded above: no RecursionError here
        raise ProtocolError("invalid_json", str(exc)) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("invalid_event", "missing type")
    return message


def client_event_id(message: dict[str, Any]) -> str | None:
    value = message.get("event_id")
    return value if isinstance(value, str) else None


def reply(kind: str, eid: str | None) -> dict[str, Any]:
    """A server event answering the client event ``eid`` (echoed as ``previous_event_id``)."""
    event: dict[str, Any] = {"type": kind, "event_id": event_id()}
    if eid:
        event["previous_event_id"] = eid
    return event


def busy_from(exc: Overloaded) -> ProtocolError:
    """The scheduler's full queue (HTTP 429 + Retry-After seconds) as the protocol's ``busy``."""
    return backend_error(exc)


def backend_error(exc: Exception) -> ProtocolError:
    """A model-side failure during a commit, as the peers' code (busy for a full queue)."""
    problem = classify(exc)
    report(problem, "realtime session", current_request_id())
    return ProtocolError(
        realtime_code(problem),
        problem.message,
        retry_after_ms=realtime_retry_after_ms(problem),
        detail=problem.detail,
    )


def refusal(exc: Exception) -> SessionRefused:
    """Why a session could not start, from the errors model lookup and loading raise."""
    problem = classify(exc)
    report(problem, "realtime session", current_request_id())
    return SessionRefused(realtime_code(problem), problem.message, ws_close_code(problem))


def loaded_model(services: Services, name: str) -> LoadedModel | None:
    """``name``'s runner if it is loaded and usable now (its info is then known)."""
    for model in services.scheduler.loaded():
        if model.name == name and model.runner.alive and not model.unloading:
            return model
    return None


def model_load(services: Services, name: str) -> int:
    """Requests for ``name`` running or waiting: the queue depth a status reports."""
    scheduler = services.scheduler
    model = next((m for m in scheduler.loaded() if m.name == name), None)
    running = model.refcount if model is not None else 0
    return running + scheduler.waiting(name)


def vox_status(services: Services) -> dict[str, Any]:
    """Server-wide facts added to every ``server.status`` (a Vox extension the peers ignore)."""
    models: list[LoadedModel] = services.scheduler.loaded()
    return {
        "version": __version__,
        "uptime_seconds": round(time.monotonic() - STARTED, 3),
        "pid": os.getpid(),
        "models": [
            {
                "name": m.name,
                "type": m.spec.kind,
                "adapter": m.spec.adapter,
                "sample_rate": m.info.sample_rate,
                "in_flight": m.refcount,
                "queued": services.scheduler.queued(m),
            }
            for m in models
        ],
    }

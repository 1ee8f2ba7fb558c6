"""What both realtime protocols share: the transport seam, ids, error events, busy mapping."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Protocol

from vox_control import __version__
from vox_control.audio.decode import PCMResampler
from vox_control.errors import Overloaded, VoxError
from vox_control.runner_client import RunnerDied, RunnerRequestError
from vox_control.scheduler.loop import LoadError
from vox_control.scheduler.scheduled import LoadedModel
from vox_control.services import Services
from vox_control.sessions.channel import (
    BAD_CONFIG,
    INTERNAL,
    MODEL_NOT_FOUND,
    ClientGone,
)
from vox_control.store.registry import InvalidModelName, UnknownModel

__all__ = ["ClientGone", "Transport"]

PROTOCOL_VERSION = "0.1"  # both published peers speak 0.1
AUDIO_FORMAT = "pcm16"
# Answer to a commit refused because this connection already has a response in flight.
BUSY_RETRY_AFTER_MS = 250
STARTED = time.monotonic()  # server uptime for server.status (this module loads at start)

# OpenAI Realtime's coarse error types for each code (the peers' own table).
ERROR_TYPES = {
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
        self._resampler: PCMResampler | None = None

    def push(self, pcm: bytes, rate: int) -> list[bytes]:
        if rate != self.rate:
            if self._resampler is None or self._resampler.in_rate != rate:
                self._resampler = PCMResampler(rate, self.rate)
            pcm = self._resampler.push(pcm)
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


class ProtocolError(Exception):
    """A client mistake answered with an ``error`` event; the session goes on."""

    def __init__(self, code: str, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.client_event_id: str | None = None  # the event it answers, when it named one


class SessionRefused(Exception):
    """The session cannot start (unknown model, load failure): error event, then close."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


def event_id() -> str:
    return f"evt_{uuid.uuid4().hex[:16]}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def error_object(code: str, message: str) -> dict[str, Any]:
    return {"type": ERROR_TYPES.get(code, "server_error"), "code": code, "message": message}


def error_event(
    code: str,
    message: str,
    *,
    client_event_id: str | None = None,
    retry_after_ms: int | None = None,
) -> dict[str, Any]:
    """The peers' ``error`` event: correlation and retry hint both nested and top level."""
    error = error_object(code, message)
    event: dict[str, Any] = {"type": "error", "event_id": event_id(), "error": error}
    if client_event_id:
        error["event_id"] = client_event_id
        event["previous_event_id"] = client_event_id
    if retry_after_ms is not None:
        error["retry_after_ms"] = retry_after_ms
        event["retry_after_ms"] = retry_after_ms
    return event


def parse(frame: str) -> dict[str, Any]:
    """A text frame as a JSON object with a string ``type``."""
    try:
        message = json.loads(frame)
    except json.JSONDecodeError as exc:
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
    try:
        seconds = float(exc.headers.get("Retry-After", "1"))
    except ValueError:
        seconds = 1.0
    return ProtocolError("busy", exc.message, retry_after_ms=max(1, round(seconds * 1000)))


def backend_error(exc: Exception) -> ProtocolError:
    """A model-side failure during a commit, as a ``backend_error`` (busy for a full queue)."""
    if isinstance(exc, Overloaded):
        return busy_from(exc)
    if isinstance(exc, VoxError):
        code = "invalid_config" if exc.status < 500 else "backend_error"
        return ProtocolError(code, exc.message)
    if isinstance(exc, RunnerRequestError):
        code = "invalid_config" if exc.code in ("bad_request", "unsupported") else "backend_error"
        return ProtocolError(code, exc.message)
    if isinstance(exc, RunnerDied):
        return ProtocolError(
            "backend_error",
            f"the runner for {exc.name} stopped (exit code {exc.returncode}); "
            "it will be restarted on the next commit",
        )
    if isinstance(exc, LoadError):
        return ProtocolError("backend_error", str(exc))
    return ProtocolError("internal_error", f"{type(exc).__name__}: {exc}")


def refusal(exc: Exception) -> SessionRefused:
    """Why a session could not start, from the errors model lookup and loading raise."""
    if isinstance(exc, UnknownModel) or (isinstance(exc, VoxError) and exc.status == 404):
        return SessionRefused("model_not_found", str(exc), MODEL_NOT_FOUND)
    if isinstance(exc, InvalidModelName):
        return SessionRefused("invalid_config", str(exc), BAD_CONFIG)
    if isinstance(exc, VoxError) and exc.status < 500 and not isinstance(exc, Overloaded):
        return SessionRefused("invalid_config", exc.message, BAD_CONFIG)
    mapped = backend_error(exc)
    return SessionRefused(mapped.code, mapped.message, INTERNAL)


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

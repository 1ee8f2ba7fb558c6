"""OpenAI Realtime transcription sessions: the client events' fields and the server events.

The shapes follow the openai Python SDK (2.x, GA API): ``session.update`` carries
``session.type == "transcription"`` and ``session.audio.input.{format, transcription,
turn_detection}``. The beta's flat fields (``input_audio_format``, ``input_audio_transcription``,
``turn_detection``) are read too, so older clients work unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vox_protocol import Transcript

from vox_control.errors import VoxError
from vox_control.lazy import lazy_module
from vox_control.sessions.pipecat_wire import event_id, new_id

if TYPE_CHECKING:
    import numpy as np
    import soxr
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

Format = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
FORMAT_RATES: dict[Format, int] = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}
# The beta's names for the same formats.
BETA_FORMATS: dict[str, Format] = {
    "pcm16": "audio/pcm",
    "g711_ulaw": "audio/pcmu",
    "g711_alaw": "audio/pcma",
}


class EventError(VoxError):
    """A client event the session refuses; answered with an ``error`` event, the session goes on."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message, param=param, code=code)


@dataclass(frozen=True)
class TurnDetection:
    """server_vad's parameters, with OpenAI's defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class SessionConfig:
    model: str | None = None  # as requested (alias or Vox name); None: the default STT model
    language: str | None = None
    prompt: str | None = None
    format: Format = "audio/pcm"
    turn_detection: TurnDetection | None = TurnDetection()


# ---------------------------------------------------------------------- session plumbing


@dataclass(frozen=True)
class Limits:
    max_pending_s: float = 10.0  # received but not yet through the VAD: a flood past this
    max_buffer_s: float = 300.0  # uncommitted audio (manual mode without commits)
    idle_timeout_s: float = 120.0  # no client event for this long ends the session


class SessionClosed(VoxError):
    """Ends the session: an ``error`` event, then a close."""

    def __init__(self, message: str, code: str, close_code: int) -> None:
        super().__init__(message, code=code)
        self.close_code = close_code


@dataclass
class Append:
    pcm: np.ndarray


@dataclass
class Commit:
    client_event_id: str | None


@dataclass
class Clear:
    client_event_id: str | None


@dataclass
class Turn:
    item_id: str
    pcm: np.ndarray
    # The transcript started early, once the turn fell silent (server_vad), when it ended there.
    early: asyncio.Task[Transcript] | None = None


def _obj(value: object, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(f"'{param}' must be an object", param=param)
    return value


def _text(value: object, param: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 4096:
        raise EventError(f"'{param}' must be a string of at most 4096 characters", param=param)
    return value


def _number(value: object, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise EventError(f"'{param}' must be a number from {low:g} to {high:g}", param=param)
    return float(value)


def _format(value: object, param: str) -> Format:
    name = value.get("type") if isinstance(value, dict) else value
    if isinstance(name, str) and name in BETA_FORMATS:
        return BETA_FORMATS[name]
    for fmt, rate in FORMAT_RATES.items():
        if name == fmt:
            given = value.get("rate") if isinstance(value, dict) else None
            if given is not None and given != rate:
                raise EventError(f"'{param}.rate' must be {rate}", param=f"{param}.rate")
            return fmt
    known = ", ".join([*FORMAT_RATES, *BETA_FORMATS])
    raise EventError(f"'{param}' must be one of {known}", param=param)


def _turn_detection(value: object, param: str) -> TurnDetection | None:
    if value is None:
        return None
    spec = _obj(value, param)
    if spec.get("type", "server_vad") != "server_vad":
        raise EventError(
            f"'{param}.type' must be server_vad (or turn_detection null)",
            param=f"{param}.type",
            code="unsupported",
        )
    base = TurnDetection()
    fields = {
        "threshold": (0.0, 1.0),
        "prefix_padding_ms": (0, 10_000),
        "silence_duration_ms": (0, 10_000),
    }
    values: dict[str, Any] = {}
    for key, (low, high) in fields.items():
        if spec.get(key) is not None:
            number = _number(spec[key], f"{param}.{key}", low, high)
            values[key] = number if key == "threshold" else int(number)
    return dataclasses.replace(base, **values)


def apply_update(config: SessionConfig, session: object) -> SessionConfig:
    """A ``session.update``'s ``session`` over the current config; unknown fields are ignored,
    as OpenAI's own server ignores the ones a transcription session does not use."""
    body = _obj(session, "session")
    kind = body.get("type")
    if kind is not None and kind != "transcription":
        raise EventError(
            "this endpoint serves transcription sessions only (session.type 'transcription')",
            param="session.type",
            code="unsupported",
        )
    changes: dict[str, Any] = {}
    audio_in = _obj(
        _obj(body.get("audio", {}), "session.audio").get("input", {}), "session.audio.input"
    )
    pairs = (
        ("format", audio_in, "format", "session.audio.input.format"),
        ("format", body, "input_audio_format", "session.input_audio_format"),
        ("transcription", audio_in, "transcription", "session.audio.input.transcription"),
        ("transcription", body, "input_audio_transcription", "session.input_audio_transcription"),
        ("turn", audio_in, "turn_detection", "session.audio.input.turn_detection"),
        ("turn", body, "turn_detection", "session.turn_detection"),
    )
    for what, holder, key, param in pairs:
        if key not in holder:
            continue
        value = holder[key]
        if what == "format":
            changes["format"] = _format(value, param)
        elif what == "turn":
            changes["turn_detection"] = _turn_detection(value, param)
        elif value is not None:
            spec = _obj(value, param)
            for field in ("model", "language", "prompt"):
                if field in spec:
                    changes[field] = _text(spec[field], f"{param}.{field}")
    return dataclasses.replace(config, **changes)


# ---------------------------------------------------------------------- audio


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.uint8)
    exponent = (u >> 4) & 7
    magnitude = (((u & 0x0F).astype(np.int32) << 3) + 0x84) << exponent
    sample = magnitude - 0x84
    return (np.where(u & 0x80, -sample, sample) / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 7
    mantissa = a & 0x0F
    shifted = ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    sample = np.where(exponent == 0, (mantissa << 4) + 8, shifted)
    return (np.where(a & 0x80, sample, -sample) / 32768.0).astype(np.float32)


@functools.cache
def _g711(fmt: Format) -> np.ndarray:
    """The decoding table of a G.711 format, built on first use (numpy loads with audio)."""
    return _ulaw_table() if fmt == "audio/pcmu" else _alaw_table()


def resampler(fmt: Format) -> soxr.ResampleStream:
    """One session's streaming resampler from the format's rate to 16 kHz (no seams per append)."""
    import soxr  # loaded by the first realtime session, not at start

    return soxr.ResampleStream(FORMAT_RATES[fmt], 16000, 1, dtype="float32", quality="HQ")


def decode_append(audio: object, fmt: Format) -> np.ndarray:
    """An ``input_audio_buffer.append``'s base64 audio as float32 at the format's rate."""
    if not isinstance(audio, str):
        raise EventError("'audio' must be a base64 string", param="audio")
    try:
        raw = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise EventError("'audio' is not valid base64", param="audio") from None
    if fmt == "audio/pcm":
        if len(raw) % 2:
            raise EventError("pcm16 audio must be a whole number of 16-bit samples", param="audio")
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return _g711(fmt)[np.frombuffer(raw, dtype=np.uint8)]


# ---------------------------------------------------------------------- server events


def server_event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": event_id(), **fields}


def session_object(session_id: str, config: SessionConfig, model: str) -> dict[str, Any]:
    """The session as ``session.created``/``session.updated`` describe it (GA shape)."""
    fmt: dict[str, Any] = {"type": config.format}
    if config.format == "audio/pcm":
        fmt["rate"] = FORMAT_RATES["audio/pcm"]
    turn = config.turn_detection
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": session_id,
        "audio": {
            "input": {
                "format": fmt,
                "transcription": {
                    "model": model,
                    "language": config.language,
                    "prompt": config.prompt,
                },
                "turn_detection": None
                if turn is None
                else {"type": "server_vad", **dataclasses.asdict(turn)},
                "noise_reduction": None,
            }
        },
        "include": [],
    }


def user_item(item_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def item_id() -> str:
    return new_id("item")

"""One code path for every synthesis route: body, validation, encoders, and SSE streaming."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import Stream

from vox_control.audio.encode import MEDIA_TYPES, SPEECH_FORMATS, encode_stream, output_rate
from vox_control.errors import BadRequest
from vox_control.inference import check_keep_alive, check_speed, open_synthesis, resolve
from vox_control.renderers import sse_error
from vox_control.services import Services
from vox_control.validation import check_text

STREAM_FORMATS = ("audio", "sse")


class SpeechBody(msgspec.Struct, forbid_unknown_fields=False):
    """OpenAI's speech body, plus ``text`` (alias of input), ``language`` and ``sample_rate``."""

    input: str | None = None
    text: str | None = None
    model: str | None = None
    voice: str | None = None
    speed: float = 1.0
    response_format: str | None = None
    stream_format: str = "audio"
    # Accepted for OpenAI compatibility; the bundled models (piper, kokoro) cannot follow
    # style instructions, so it does not change their output.
    instructions: str | None = None
    language: str | None = None
    sample_rate: int | None = None  # extension: the output's rate (pcm defaults to 24 kHz)
    keep_alive: str | float | None = None  # extension (Ollama's): how long the model stays loaded


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


async def _sse(audio: AsyncIterator[bytes], text: str) -> AsyncIterator[bytes]:
    """OpenAI's speech SSE: base64 audio deltas, then a done event with usage."""
    sent = 0
    try:
        async for piece in audio:
            sent += len(piece)
            encoded = base64.b64encode(piece).decode("ascii")
            yield sse_event({"type": "speech.audio.delta", "audio": encoded})
    except Exception as exc:
        # The stream has begun with 200: the error travels as an event.
        yield sse_error(exc)
        return
    # Token counts mean nothing for these models; characters in and bytes out are what we have.
    usage = {"input_tokens": len(text), "output_tokens": sent, "total_tokens": len(text) + sent}
    yield sse_event({"type": "speech.audio.done", "usage": usage})


async def speech_response(services: Services, body: SpeechBody, default_format: str) -> Stream:
    """Validate everything, start synthesis (first sentence done), then stream it out."""
    fmt = body.response_format or default_format
    if fmt not in SPEECH_FORMATS:
        raise BadRequest(
            f"response_format '{fmt}' is not supported; use one of {', '.join(SPEECH_FORMATS)}",
            param="response_format",
        )
    if body.stream_format not in STREAM_FORMATS:
        raise BadRequest(
            f"stream_format '{body.stream_format}' is not supported; use audio or sse",
            param="stream_format",
        )
    param = "input" if body.input is not None or body.text is None else "text"
    text = check_text(body.input if body.input is not None else body.text, param)
    speed = check_speed(body.speed)
    keep_alive = check_keep_alive(body.keep_alive)
    model = resolve(services, body.model, "tts")
    # A bad sample_rate is refused before the model does any work, using the catalog's rate;
    # the body's rate follows the loaded model's own once the first audio is there.
    output_rate(fmt, model.rate, body.sample_rate)
    model_rate, chunks = await open_synthesis(
        services, model, text, body.voice, speed, body.language, keep_alive
    )
    out_rate = output_rate(fmt, model_rate, body.sample_rate)
    audio = encode_stream(chunks, fmt, out_rate)
    headers = {
        "X-Sample-Rate": str(out_rate),
        "X-Model-Sample-Rate": str(model_rate),
        "X-Model": model.name,
    }
    if body.stream_format == "sse":
        return Stream(
            _sse(audio, text),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    return Stream(audio, media_type=MEDIA_TYPES[fmt], headers=headers)

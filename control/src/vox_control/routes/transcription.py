"""One code path for every transcription route: form parsing, formats, and SSE streaming."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Response
from litestar.response import Stream
from vox_protocol import Transcript

from vox_control.audio.long_audio import LongAudio
from vox_control.errors import BadRequest
from vox_control.inference import (
    ResolvedModel,
    TranscribeOptions,
    check_keep_alive,
    decode_for,
    read_upload,
    resolve,
    transcribe,
)
from vox_control.lazy import lazy_module
from vox_control.renderers import sse_error
from vox_control.routes.forms import bool_field, float_field, int_field, list_field, text_field
from vox_control.routes.speech import sse_event
from vox_control.services import Services
from vox_control.text.subtitles import MEDIA_TYPES, TRANSCRIPT_FORMATS, render, verbose_json

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

SSE = "text/event-stream"
GRANULARITIES = ("word", "segment")
# Formats a stream can end with: OpenAI streams the text only.
STREAM_FORMATS = ("json", "text")


@dataclass(frozen=True)
class TranscriptionRequest:
    name: str
    options: TranscribeOptions
    response_format: str  # one of TRANSCRIPT_FORMATS, or "native" (the /api shape)
    words: bool
    segments: bool
    stream: bool
    keep_alive: float | None = None  # seconds; None: the server default


def parse_form(
    services: Services, form: Mapping[str, Any], task: str, *, native: bool
) -> TranscriptionRequest:
    """Validate every field before any audio is read, so a bad value never costs a decode."""
    fmt = text_field(form, "response_format") or ("native" if native else "json")
    if fmt not in TRANSCRIPT_FORMATS and not (native and fmt == "native"):
        raise BadRequest(
            f"response_format '{fmt}' is not supported; use one of {', '.join(TRANSCRIPT_FORMATS)}",
            param="response_format",
        )
    granularities = list_field(form, "timestamp_granularities[]") + list_field(
        form, "timestamp_granularities"
    )
    for value in granularities:
        if value not in GRANULARITIES:
            raise BadRequest(
                f"timestamp_granularities has '{value}'; use word and/or segment",
                param="timestamp_granularities",
            )
    if granularities and fmt not in ("verbose_json", "native"):
        raise BadRequest(
            "timestamp_granularities needs response_format verbose_json",
            param="timestamp_granularities",
        )
    words = "word" in granularities or bool_field(form, "word_timestamps")
    stream = bool_field(form, "stream")
    if stream and fmt not in STREAM_FORMATS and not (native and fmt == "native"):
        raise BadRequest(
            f"stream=true returns text events; response_format '{fmt}' cannot be streamed "
            "(use json or text)",
            param="stream",
        )
    temperature = float_field(form, "temperature")
    if temperature is not None and not 0.0 <= temperature <= 1.0:
        raise BadRequest("'temperature' must be between 0 and 1", param="temperature")
    beam_size = int_field(form, "beam_size")
    if beam_size is not None and not 1 <= beam_size <= 20:
        raise BadRequest("'beam_size' must be between 1 and 20", param="beam_size")
    requested_task = text_field(form, "task") if native else None
    if requested_task not in (None, "transcribe", "translate"):
        raise BadRequest("'task' must be transcribe or translate", param="task")
    options = TranscribeOptions(
        language=text_field(form, "language"),
        task=requested_task or task,
        prompt=text_field(form, "prompt"),
        temperature=temperature,
        word_timestamps=words,
        vad_filter=bool_field(form, "vad_filter"),
        beam_size=beam_size,
    )
    return TranscriptionRequest(
        name=services.model_name(text_field(form, "model"), "stt"),
        options=options,
        response_format=fmt,
        words=words,
        segments="segment" in granularities or "word" not in granularities,
        stream=stream,
        keep_alive=check_keep_alive(text_field(form, "keep_alive")),
    )


def native_json(name: str, transcript: Transcript, elapsed: float) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(transcript)
    body.pop("type", None)
    body.pop("id", None)
    body["model"] = name
    body["processing_ms"] = round(elapsed * 1000)
    return body


def render_response(
    request: TranscriptionRequest, transcript: Transcript, elapsed: float
) -> Response[Any]:
    fmt = request.response_format
    headers = {"X-Processing-Ms": str(round(elapsed * 1000)), "X-Model": request.name}
    if fmt == "native":
        return Response(native_json(request.name, transcript, elapsed), headers=headers)
    if fmt == "json":
        return Response({"text": transcript.text}, headers=headers)
    if fmt == "verbose_json":
        body = verbose_json(
            transcript, request.options.task, words=request.words, segments=request.segments
        )
        return Response(body, headers=headers)
    return Response(render(transcript, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)


async def _events(
    services: Services,
    request: TranscriptionRequest,
    model: ResolvedModel,
    pcm: np.ndarray | LongAudio,
    rate: int,
) -> AsyncIterator[bytes]:
    try:
        transcript = await transcribe(
            services, model, pcm, rate, request.options, request.keep_alive
        )
    except Exception as exc:
        # The stream has begun with 200: the error travels as an event, which the openai
        # SDK raises as APIError.
        yield sse_error(exc)
        return
    for segment in transcript.segments:
        if segment.text:
            yield sse_event({"type": "transcript.text.delta", "delta": segment.text})
    yield sse_event({"type": "transcript.text.done", "text": transcript.text})


async def transcription_response(
    services: Services, form: Mapping[str, Any], task: str, *, native: bool = False
) -> Response[Any] | Stream:
    request = parse_form(services, form, task, native=native)
    audio = await read_upload(form.get("file"))
    started = time.perf_counter()
    # Unknown models and bad audio answer 404/400 before any stream starts.
    model = resolve(services, request.name, "stt")
    pcm, rate = await decode_for(services, model, audio)
    del audio
    if request.stream:
        return Stream(
            _events(services, request, model, pcm, rate),
            media_type=SSE,
            headers={"Cache-Control": "no-cache", "X-Model": request.name},
        )
    transcript = await transcribe(services, model, pcm, rate, request.options, request.keep_alive)
    return render_response(request, transcript, time.perf_counter() - started)

"""The OpenAI-compatible audio API (/v1/*)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Stream

from vox_control.audio import OPENAI_PCM_RATE, encode_stream
from vox_control.errors import BadRequest, ModelNotFound
from vox_control.inference import (
    TranscribeOptions,
    check_speed,
    check_text,
    open_synthesis,
    read_upload,
    transcribe,
)
from vox_control.routes.forms import float_field, list_field, text_field
from vox_control.services import OPENAI_STT_ALIASES, OPENAI_TTS_ALIASES, Services

TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")
SPEECH_FORMATS = ("wav", "pcm")
_MEDIA = {"wav": "audio/wav", "pcm": "audio/pcm"}


class SpeechBody(msgspec.Struct, forbid_unknown_fields=False):
    input: str | None = None
    model: str | None = None
    voice: str | None = None
    speed: float = 1.0
    # OpenAI's default is mp3; until the encoders land, wav is the default here.
    response_format: str = "wav"
    instructions: str | None = None  # accepted; the bundled models cannot follow instructions
    sample_rate: int | None = None  # extension: output rate (pcm defaults to OpenAI's 24 kHz)


def _verbose(transcript: Any, words: bool, segments: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": transcript.language,
        "duration": transcript.duration,
        "text": transcript.text,
    }
    if segments:
        body["segments"] = [
            {
                "id": i,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "avg_logprob": s.avg_logprob,
                "no_speech_prob": s.no_speech_prob,
            }
            for i, s in enumerate(transcript.segments)
        ]
    if words:
        body["words"] = [
            {"word": w.word, "start": w.start, "end": w.end}
            for s in transcript.segments
            for w in s.words
        ]
    return body


class OpenAIController(Controller):
    path = "/v1"
    tags = ["openai"]  # noqa: RUF012

    @post("/audio/transcriptions", status_code=200)
    async def transcriptions(
        self,
        services: Services,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[Any]:
        return await self._transcribe(services, data, "transcribe")

    @post("/audio/translations", status_code=200)
    async def translations(
        self,
        services: Services,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[Any]:
        return await self._transcribe(services, data, "translate")

    async def _transcribe(
        self, services: Services, data: dict[str, Any], task: str
    ) -> Response[Any]:
        fmt = text_field(data, "response_format") or "json"
        if fmt not in TRANSCRIPT_FORMATS:
            raise BadRequest(
                f"response_format '{fmt}' is not supported; "
                f"use one of {', '.join(TRANSCRIPT_FORMATS)}",
                param="response_format",
            )
        granularities = set(list_field(data, "timestamp_granularities[]")) | set(
            list_field(data, "timestamp_granularities")
        )
        audio = await read_upload(data.get("file"))
        name = services.model_name(text_field(data, "model"), "stt")
        options = TranscribeOptions(
            language=text_field(data, "language"),
            task=task,
            prompt=text_field(data, "prompt"),
            temperature=float_field(data, "temperature"),
            word_timestamps="word" in granularities,
        )
        started = time.perf_counter()
        result = await transcribe(services, name, audio, options)
        headers = {"X-Processing-Ms": str(round((time.perf_counter() - started) * 1000))}
        if fmt == "text":
            return Response(result.text + "\n", media_type="text/plain", headers=headers)
        if fmt == "verbose_json":
            body = _verbose(
                result, "word" in granularities, "segment" in granularities or not granularities
            )
            body["task"] = task
            return Response(body, headers=headers)
        return Response({"text": result.text}, headers=headers)

    @post("/audio/speech", status_code=200)
    async def speech(self, services: Services, data: SpeechBody) -> Stream:
        fmt = data.response_format
        if fmt not in SPEECH_FORMATS:
            raise BadRequest(
                f"response_format '{fmt}' is not supported yet; "
                f"use one of {', '.join(SPEECH_FORMATS)}",
                param="response_format",
            )
        text = check_text(data.input)
        name = services.model_name(data.model, "tts")
        rate, chunks = await open_synthesis(
            services, name, text, data.voice, check_speed(data.speed)
        )
        # OpenAI defines pcm as 24 kHz; wav carries the model's own rate unless asked otherwise.
        out_rate = data.sample_rate or (OPENAI_PCM_RATE if fmt == "pcm" else rate)
        return Stream(
            encode_stream(chunks, fmt, out_rate),
            media_type=_MEDIA[fmt],
            headers={"X-Sample-Rate": str(out_rate), "X-Model-Sample-Rate": str(rate)},
        )

    @get("/models")
    async def models(self, services: Services) -> dict[str, Any]:
        data = [self._model(m.name, m.type, m.installed_at) for m in services.store.list()]
        return {"object": "list", "data": data}

    @get("/models/{model_id:str}")
    async def model(self, services: Services, model_id: str) -> dict[str, Any]:
        for m in services.store.list():
            if m.name == model_id:
                return self._model(m.name, m.type, m.installed_at)
        if model_id in OPENAI_STT_ALIASES | OPENAI_TTS_ALIASES:
            return self._model(model_id, "alias", 0)
        raise ModelNotFound(f"model '{model_id}' not found")

    @staticmethod
    def _model(name: str, kind: str, created: Any) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": int(created or 0),
            "owned_by": "vox",
            "type": kind,
        }

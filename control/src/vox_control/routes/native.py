"""The native REST API (/api/*), compatible with vox-runtime's routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Stream

from vox_control import __version__
from vox_control.audio import encode_stream
from vox_control.errors import BadRequest, error_body
from vox_control.inference import (
    TranscribeOptions,
    check_speed,
    check_text,
    open_synthesis,
    read_upload,
    transcribe,
)
from vox_control.routes.forms import bool_field, float_field, int_field, text_field
from vox_control.services import Services

_NDJSON = "application/x-ndjson"


class SynthesizeBody(msgspec.Struct, forbid_unknown_fields=False):
    input: str | None = None
    text: str | None = None  # alias some clients send
    model: str | None = None
    voice: str | None = None
    speed: float = 1.0
    response_format: Literal["wav", "pcm"] = "wav"
    sample_rate: int | None = None  # extension: resample the output to this rate


class PullBody(msgspec.Struct, forbid_unknown_fields=False):
    model: str | None = None
    name: str | None = None  # Ollama's older field name
    stream: bool = True


def transcript_json(name: str, transcript: Any, elapsed: float) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(transcript)
    body.pop("type", None)
    body.pop("id", None)
    body["model"] = name
    body["processing_ms"] = round(elapsed * 1000)
    return body


def model_json(manifest: Any) -> dict[str, Any]:
    return {
        "name": manifest.name,
        "type": manifest.type,
        "adapter": manifest.adapter,
        "size": manifest.total_size,
        "installed_at": manifest.installed_at,
        "source": manifest.source_kind,
    }


class NativeController(Controller):
    path = "/api"
    tags = ["native"]  # noqa: RUF012

    @get("/health")
    async def health(self, services: Services) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "loaded": len(services.scheduler.loaded()),
            "pulling": services.puller.in_progress(),
        }

    @get("/list")
    async def list_models(self, services: Services) -> dict[str, Any]:
        return {"models": [model_json(m) for m in services.store.list()]}

    @get("/ps")
    async def ps(self, services: Services) -> dict[str, Any]:
        now = time.monotonic()
        models = []
        for m in services.scheduler.loaded():
            models.append(
                {
                    "name": m.name,
                    "type": m.spec.kind,
                    "adapter": m.spec.adapter,
                    "pid": m.runner.pid,
                    "device": m.info.device,
                    "providers": m.info.providers,
                    "sample_rate": m.info.sample_rate,
                    "in_flight": m.refcount,
                    "loaded_for_s": round(now - m.loaded_at, 1),
                    "idle_for_s": round(now - m.last_used, 1) if m.refcount == 0 else 0.0,
                    "load_seconds": round(m.load_seconds, 3),
                }
            )
        return {"models": models}

    @post("/pull", status_code=200)
    async def pull(self, services: Services, data: PullBody) -> Stream | dict[str, Any]:
        name = data.model or data.name
        if not name:
            raise BadRequest("'model' is required", param="model")
        name = services.model_name(name, "stt")
        services.registry.get(name)  # unknown names fail with 404 before streaming starts
        if not data.stream:
            manifest = await services.puller.pull(name)
            return {"status": "success", "model": manifest.name}

        async def events() -> AsyncIterator[bytes]:
            try:
                async for event in services.puller.events(name):
                    yield msgspec.json.encode(event) + b"\n"
            except Exception as exc:
                # The stream already started with 200; the error travels as the last event,
                # as Ollama's pull does.
                body = {"status": "error", **error_body(str(exc), "server_error")}
                yield msgspec.json.encode(body) + b"\n"
                return
            yield msgspec.json.encode({"status": "success", "model": name}) + b"\n"

        return Stream(events(), media_type=_NDJSON)

    @post("/transcribe", status_code=200)
    async def transcribe(
        self,
        services: Services,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> dict[str, Any]:
        started = time.perf_counter()
        audio = await read_upload(data.get("file"))
        name = services.model_name(text_field(data, "model"), "stt")
        options = TranscribeOptions(
            language=text_field(data, "language"),
            task=text_field(data, "task") or "transcribe",
            prompt=text_field(data, "prompt"),
            temperature=float_field(data, "temperature"),
            word_timestamps=bool_field(data, "word_timestamps"),
            vad_filter=bool_field(data, "vad_filter"),
            beam_size=int_field(data, "beam_size"),
        )
        result = await transcribe(services, name, audio, options)
        return transcript_json(name, result, time.perf_counter() - started)

    @post("/synthesize", status_code=200)
    async def synthesize(self, services: Services, data: SynthesizeBody) -> Stream:
        text = check_text(data.input if data.input is not None else data.text)
        name = services.model_name(data.model, "tts")
        rate, chunks = await open_synthesis(
            services, name, text, data.voice, check_speed(data.speed)
        )
        out_rate = data.sample_rate or rate
        media = "audio/wav" if data.response_format == "wav" else "audio/pcm"
        return Stream(
            encode_stream(chunks, data.response_format, out_rate),
            media_type=media,
            headers={"X-Sample-Rate": str(out_rate), "X-Model": name},
        )

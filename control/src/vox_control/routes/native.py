"""The native REST API (/api/*), compatible with vox-runtime's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Stream

from vox_control import __version__
from vox_control.errors import BadRequest
from vox_control.renderers import ndjson_error
from vox_control.routes.openapi import INFERENCE, NATIVE_TRANSCRIPTION, PULL, SPEECH, errors
from vox_control.routes.speech import SpeechBody, speech_response
from vox_control.routes.transcription import native_json, transcription_response
from vox_control.services import Services
from vox_control.validation import JSON_MAX_BYTES

_NDJSON = "application/x-ndjson"


class PullBody(msgspec.Struct, forbid_unknown_fields=False):
    model: str | None = None
    name: str | None = None  # Ollama's older field name
    stream: bool = True
    verify: bool = False  # hash every installed file; re-fetch what does not match


transcript_json = native_json  # the native transcript shape, kept under its first name


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

    @get("/health", responses=errors(auth=False))
    async def health(self, services: Services) -> dict[str, Any]:
        return health_body(services)

    @get("/list", responses=errors())
    async def list_models(self, services: Services) -> dict[str, Any]:
        return {"models": [model_json(m) for m in services.store.list()]}

    @post(
        "/pull",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(400, 404, 413, 422, 502, 503),
        operation_class=PULL,
    )
    async def pull(self, services: Services, data: PullBody) -> Stream | dict[str, Any]:
        name = data.model or data.name
        if not name:
            raise BadRequest("'model' is required", param="model")
        return await pull_response(services, name, stream=data.stream, verify=data.verify)

    @post(
        "/transcribe",
        status_code=200,
        responses=errors(*INFERENCE),
        operation_class=NATIVE_TRANSCRIPTION,
    )
    async def transcribe(
        self,
        services: Services,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[Any] | Stream:
        """Same options as /v1/audio/transcriptions plus task, word_timestamps, vad_filter and
        beam_size; without response_format it answers the native JSON (segments, words)."""
        return await transcription_response(services, data, "transcribe", native=True)

    @post(
        "/synthesize",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(*INFERENCE),
        operation_class=SPEECH,
    )
    async def synthesize(self, services: Services, data: SpeechBody) -> Stream:
        """Same body as /v1/audio/speech; the default response_format is wav."""
        return await speech_response(services, data, "wav")


async def pull_response(
    services: Services, requested: str, *, stream: bool, verify: bool = False
) -> Stream | dict[str, Any]:
    """A pull as NDJSON progress events (or one JSON answer): /api/pull and /v1/models/pull.

    ``verify`` hashes every installed file and fetches again what does not match.
    """
    name = services.model_name(requested, "stt")
    # Unknown names fail with 404 before streaming starts; aliases pull their model.
    name = services.registry.resolve(name).name
    services.puller.check(name)  # a GPU-only model on a CPU server: 422, nothing fetched
    if not stream:
        manifest = await services.puller.pull(name, verify=verify)
        return {"status": "success", "model": manifest.name}

    async def events() -> AsyncIterator[bytes]:
        try:
            async for event in services.puller.events(name, verify=verify):
                if event.status == "success":
                    # The source's own "installed" mark: an Ollama-style client stops at the
                    # first success, so the stream says it once, last, when all is ready.
                    continue
                yield msgspec.json.encode(event) + b"\n"
        except Exception as exc:
            # The stream already started with 200; the error travels as the last event,
            # as Ollama's pull does.
            yield ndjson_error(exc)
            return
        yield msgspec.json.encode({"status": "success", "model": name}) + b"\n"

    return Stream(events(), media_type=_NDJSON)


def health_body(services: Services) -> dict[str, Any]:
    """Liveness: /api/health and vox-runtime's /v1/health."""
    return {
        "status": "ok",
        "version": __version__,
        "loaded": len(services.scheduler.loaded()),
        "pulling": services.puller.in_progress(),
    }

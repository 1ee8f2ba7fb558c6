"""The OpenAI-compatible audio API (/v1/*): transcriptions, translations, speech, models."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Response, delete, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Stream

from vox_control.errors import ModelNotFound
from vox_control.routes.compat import runtime_model
from vox_control.routes.models import remove_model
from vox_control.routes.openapi import INFERENCE, SPEECH, TRANSCRIPTION, errors
from vox_control.routes.speech import SpeechBody, speech_response
from vox_control.routes.transcription import transcription_response
from vox_control.services import OPENAI_STT_ALIASES, OPENAI_TTS_ALIASES, Services
from vox_control.validation import JSON_MAX_BYTES

Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)]


class OpenAIController(Controller):
    path = "/v1"
    tags = ["openai"]  # noqa: RUF012

    @post(
        "/audio/transcriptions",
        status_code=200,
        responses=errors(*INFERENCE),
        operation_class=TRANSCRIPTION,
    )
    async def transcriptions(self, services: Services, data: Form) -> Response[Any] | Stream:
        """OpenAI transcription: json, text, srt, vtt, verbose_json; stream=true gives SSE."""
        return await transcription_response(services, data, "transcribe")

    @post(
        "/audio/translations",
        status_code=200,
        responses=errors(*INFERENCE),
        operation_class=TRANSCRIPTION,
    )
    async def translations(self, services: Services, data: Form) -> Response[Any] | Stream:
        """Whisper's translate task (speech in any language to English text), same formats."""
        return await transcription_response(services, data, "translate")

    @post(
        "/audio/speech",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(*INFERENCE),
        operation_class=SPEECH,
    )
    async def speech(self, services: Services, data: SpeechBody) -> Stream:
        """OpenAI speech: mp3 (default), opus, aac, flac, wav, pcm; stream_format audio or sse."""
        return await speech_response(services, data, "mp3")

    @get("/models", responses=errors())
    async def models(self, services: Services) -> dict[str, Any]:
        """Installed models, then the OpenAI aliases of the installed defaults.

        `models` carries the same list as vox-runtime 0.2.93 serves it on this path, so its
        clients read their shape while the OpenAI SDK reads `data`."""
        installed = services.store.list()
        data = [self._model(m.name, m.type, m.installed_at) for m in installed]
        names = {m.name for m in installed}
        for alias, target, kind in self._aliases(services):
            if target in names:
                data.append(self._model(alias, kind, 0, alias_of=target))
        runtime = [runtime_model(services, m.name, m.type, m.total_size) for m in installed]
        return {"object": "list", "data": data, "models": runtime}

    @get("/models/{model_id:str}", responses=errors(404))
    async def model(self, services: Services, model_id: str) -> dict[str, Any]:
        for m in services.store.list():
            if m.name == model_id:
                return self._model(m.name, m.type, m.installed_at)
        for alias, target, kind in self._aliases(services):
            if alias == model_id:
                return self._model(alias, kind, 0, alias_of=target)
        raise ModelNotFound(f"model '{model_id}' not found")

    # vox-runtime's DELETE lives here, beside the GET of the same path: in another controller
    # both registered OPTIONS (Litestar refuses that), and with another parameter name the
    # document listed two templated paths for one resource and OPTIONS allowed DELETE only.
    @delete("/models/{model_id:str}", status_code=200, responses=errors(400, 404, 409))
    async def remove(self, services: Services, model_id: str) -> dict[str, Any]:
        """Remove an installed model, as DELETE /api/delete (vox-runtime 0.2.93's route)."""
        return await remove_model(services, model_id)

    @staticmethod
    def _aliases(services: Services) -> list[tuple[str, str, str]]:
        stt, tts = services.settings.default_stt, services.settings.default_tts
        return [(a, stt, "stt") for a in sorted(OPENAI_STT_ALIASES)] + [
            (a, tts, "tts") for a in sorted(OPENAI_TTS_ALIASES)
        ]

    @staticmethod
    def _model(name: str, kind: str, created: Any, alias_of: str | None = None) -> dict[str, Any]:
        body = {
            "id": name,
            "object": "model",
            "created": int(created or 0),
            "owned_by": "vox",
            "type": kind,
        }
        if alias_of:
            body["alias_of"] = alias_of
        return body

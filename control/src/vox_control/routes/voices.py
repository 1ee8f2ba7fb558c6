"""GET /api/voices?model=: a TTS model's voices and where the OpenAI voice names land."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get

from vox_control.inference import list_voices
from vox_control.routes.openapi import INFERENCE, errors
from vox_control.services import OPENAI_VOICES, Services


class VoicesController(Controller):
    path = "/api"
    tags = ["native"]  # noqa: RUF012

    @get("/voices", responses=errors(*INFERENCE))
    async def voices(self, services: Services, model: str | None = None) -> dict[str, Any]:
        """Catalog voices answer without a runner; other models ask their (loaded) runner."""
        return await voices_body(services, model)


async def voices_body(services: Services, model: str | None) -> dict[str, Any]:
    """A TTS model's voices: GET /api/voices and vox-runtime's GET /v1/audio/voices."""
    name = services.model_name(model, "tts")
    voices, default = await list_voices(services, name)
    entry = services.registry.resolve(name)
    default = default or entry.default_voice or (voices[0].id if voices else None)
    openai = {v: entry.voice_map.get(v) or default for v in sorted(OPENAI_VOICES)}
    return {
        "model": entry.name,
        "default": default,
        "voices": [msgspec.to_builtins(v) for v in voices],
        "openai_voices": openai,
    }

"""vox-runtime 0.2.93's routes, as its current release serves them, over Vox's own handlers.

vox-runtime moved from the seed description's routes (which the native API serves under /api)
to these; its users switch without edits whichever release they run. Each route calls the
same function as its native twin, and answers a superset of vox-runtime's body: its fields
where they differ (a model as `name` + `tag`, `{"status": "success"}` for a delete), Vox's
beside them.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.response import Stream

from vox_control.errors import BadRequest
from vox_control.routes.native import health_body, pull_response
from vox_control.routes.openapi import INFERENCE, PULL, errors
from vox_control.routes.runtime import model_json
from vox_control.routes.voices import voices_body
from vox_control.services import Services
from vox_control.validation import JSON_MAX_BYTES


class PullBody(msgspec.Struct, forbid_unknown_fields=False):
    name: str | None = None
    model: str | None = None
    variant: str | None = None  # vox-runtime's hardware profile: Vox picks by device
    stream: bool = True


def runtime_model(services: Services, name: str, kind: str, size: int) -> dict[str, Any]:
    """A model as vox-runtime lists it: family and tag apart, its format and architecture."""
    family, _, tag = name.partition(":")
    entry = services.registry.get(name) if name in services.registry else None
    return {
        "name": family,
        "tag": tag,
        "full_name": name,
        "type": kind,
        "format": entry.adapter if entry else "",
        "architecture": family,
        "size_bytes": size,
        "description": entry.description if entry else "",
    }


class VoxRuntimeController(Controller):
    path = "/v1"
    tags = ["vox-runtime"]  # noqa: RUF012

    @get("/health", responses=errors())  # behind the API key, unlike /api/health
    async def health(self, services: Services) -> dict[str, Any]:
        """Liveness, as /api/health."""
        return health_body(services)

    @post(
        "/models/pull",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(400, 404, 413, 422, 502, 503),
        operation_class=PULL,
    )
    async def pull(self, services: Services, data: PullBody) -> Stream | dict[str, Any]:
        """Download a model: NDJSON progress events, as /api/pull."""
        name = data.name or data.model
        if not name:
            raise BadRequest("'name' is required", param="name")
        return await pull_response(services, name, stream=data.stream)

    @get("/models/loaded", responses=errors())
    async def loaded(self, services: Services) -> dict[str, Any]:
        """Loaded models (vox-runtime's fields, then /api/ps's)."""
        models = []
        for m in services.scheduler.loaded():
            family, _, tag = m.name.partition(":")
            models.append(
                {
                    "name": family,
                    "tag": tag,
                    "type": m.spec.kind,
                    "device": m.info.device,
                    "vram_bytes": int(m.memory_mb * 1e6) if m.info.device != "cpu" else 0,
                    "loaded_at": m.loaded_wall,
                    # Both on the scheduler's clock: how long after its load it was last used.
                    "last_used": m.loaded_wall + (m.last_used - m.loaded_at),
                    "ref_count": m.refcount,
                    "model": model_json(services, m),
                }
            )
        return {"models": models}

    @get("/audio/voices", responses=errors(*INFERENCE))
    async def voices(self, services: Services, model: str = "") -> dict[str, Any]:
        """Voices of one TTS model, or (no model) of every installed one with its name."""
        if model:
            body = await voices_body(services, model)
            body["voices"] = [_voice(v) for v in body["voices"]]
            return body
        listed = []
        for manifest in services.store.list():
            if manifest.type == "tts":
                body = await voices_body(services, manifest.name)
                listed += [{"model": manifest.name, **_voice(v)} for v in body["voices"]]
        return {"voices": listed}


def _voice(voice: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": voice["id"],
        "name": voice.get("name") or voice["id"],
        "language": voice.get("language") or None,
        "gender": voice.get("gender") or None,
        "description": voice.get("description") or None,
        "is_cloned": False,
    }

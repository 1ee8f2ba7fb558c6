"""Runtime routes: GET /api/ps (what is loaded and why), POST /api/load and POST /api/unload."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import msgspec
from litestar import Controller, get, post

from vox_control.errors import BadRequest
from vox_control.inference import check_keep_alive
from vox_control.routes.openapi import INFERENCE, MODEL_OR_NAME, errors
from vox_control.scheduler.scheduled import LoadedModel
from vox_control.services import Services
from vox_control.validation import JSON_MAX_BYTES


class RuntimeBody(msgspec.Struct, forbid_unknown_fields=False):
    model: str | None = None
    name: str | None = None  # Ollama's older field name
    keep_alive: str | float | None = None


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(timespec="seconds")


def model_json(services: Services, m: LoadedModel) -> dict[str, Any]:
    scheduler = services.scheduler
    expires_in = scheduler.expires_in(m)
    now = time.time()
    return {
        "name": m.name,
        "type": m.spec.kind,
        "adapter": m.spec.adapter,
        "pid": m.runner.pid,
        "device": m.info.device,
        "providers": m.info.providers,
        "sample_rate": m.info.sample_rate,
        "memory_mb": round(m.memory_mb, 1),
        "memory_measured": m.measured,
        "loaded_at": _iso(m.loaded_wall),
        "load_seconds": round(m.load_seconds, 3),
        # None while requests hold it, or when its keep_alive is negative (never unloads).
        "expires_at": _iso(now + expires_in) if expires_in is not None else None,
        "expires_in_s": round(expires_in, 1) if expires_in is not None else None,
        "keep_alive_s": None if m.keep_alive == float("inf") else m.keep_alive,
        "in_flight": m.refcount,
        "queued": scheduler.queued(m),
        "state": m.state,
    }


def _name(services: Services, body: RuntimeBody) -> str:
    requested = body.model or body.name
    if not requested:
        raise BadRequest("'model' is required", param="model")
    name = services.model_name(requested, "stt")
    try:
        return services.registry.resolve(name).name  # aliases name their model
    except KeyError:
        return name  # installed from an entry since removed, or never known: 404 later


class RuntimeController(Controller):
    path = "/api"
    tags = ["runtime"]  # noqa: RUF012

    @get("/ps", responses=errors())
    async def ps(self, services: Services) -> dict[str, Any]:
        """Loaded runners (memory measured, expiry, load), the load in progress, failed models."""
        scheduler = services.scheduler
        models = [model_json(services, m) for m in scheduler.loaded()]
        loading = scheduler.loading()
        failed = [
            {
                "name": name,
                "state": "failed",
                "error": failure.reason,
                "failures": failure.count,
                "failed_at": _iso(failure.at),
            }
            for name, failure in sorted(scheduler.failures().items())
        ]
        return {
            "models": models,
            "loading": None
            if loading is None
            else {
                "name": loading.spec.name,
                "pid": loading.pid,
                "device": loading.spec.device,
                "memory_mb": round(loading.need_mb, 1),
                "started_at": _iso(loading.started_wall),
                "state": "loading",
                "waiting": scheduler.waiting(loading.spec.name),
            },
            "failed": failed,
            # Preloads whose runners start or load ahead, not yet handed to the scheduler.
            "preloading": sorted(services.warm),
            # Sessions of the protocol servers beside HTTP: {"wyoming": {listening, sessions}}.
            "sessions": {name: report() for name, report in services.session_status.items()},
        }

    @post(
        "/load",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(*INFERENCE),
        operation_class=MODEL_OR_NAME,
    )
    async def load(self, services: Services, data: RuntimeBody) -> dict[str, Any]:
        """Load a model now (waiting for memory like any request) and keep it `keep_alive`."""
        name = _name(services, data)
        keep_alive = check_keep_alive(data.keep_alive)
        services.manifest(name)  # 404 for a model that is not pulled
        model = await services.scheduler.load(name, keep_alive)
        return {"status": "success", "model": model_json(services, model)}

    @post(
        "/unload",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(400, 413),
        operation_class=MODEL_OR_NAME,
    )
    async def unload(self, services: Services, data: RuntimeBody) -> dict[str, Any]:
        """Unload a model now if idle, or as soon as its in-flight requests finish."""
        name = _name(services, data)
        busy = any(m.name == name and m.refcount for m in services.scheduler.loaded())
        unloaded = await services.scheduler.unload(name)
        status = "not_loaded" if not unloaded else ("unloading" if busy else "unloaded")
        return {"status": status, "model": name}

"""Model management routes: show, delete, search, and register a user entry (hf:// or a dir)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import Parameter

from vox_control.errors import BadRequest, VoxError
from vox_control.services import Services
from vox_control.store.disk import NotInstalled
from vox_control.store.registry import (
    CatalogEntry,
    CatalogError,
    HFSource,
    InvalidModelName,
    LocalSource,
    Source,
    validate_name,
)


class Conflict(VoxError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class ModelBody(msgspec.Struct, forbid_unknown_fields=False):
    model: str | None = None
    name: str | None = None  # Ollama's older field name


class RegisterBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    source: str  # hf://owner/repo[@revision], or an absolute directory path
    adapter: str
    type: Literal["stt", "tts"] | None = None
    revision: str | None = None
    allow_patterns: list[str] = []
    subfolder: str = ""
    description: str = ""
    license: str = ""
    sample_rate: int | None = None
    voices: list[str] = []


def _requested(body: ModelBody) -> str:
    name = body.model or body.name
    if not name:
        raise BadRequest("'model' is required", param="model")
    return name


def entry_json(services: Services, entry: CatalogEntry) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(entry)
    body["origin"] = services.registry.origin(entry.name)
    body["installed"] = services.store.is_installed(entry.name)
    return body


def _parse_source(body: RegisterBody) -> Source:
    raw = body.source.strip()
    if raw.startswith("hf://"):
        repo, _, revision = raw.removeprefix("hf://").partition("@")
        return HFSource(
            repo=repo.strip("/"),
            revision=body.revision or revision or "main",
            allow_patterns=body.allow_patterns,
            subfolder=body.subfolder,
        )
    if "://" in raw:
        raise ValueError(f"source {raw!r}: expected hf://owner/repo or an absolute directory")
    path = Path(raw)
    if not path.is_absolute():
        raise ValueError(f"source {raw!r}: a directory must be given as an absolute path")
    if not path.is_dir():
        raise ValueError(f"source {raw!r} is not a directory on the server's machine")
    return LocalSource(path=str(path.resolve()))


class ModelsController(Controller):
    path = "/api"
    tags = ["models"]  # noqa: RUF012

    @post("/show", status_code=200)
    async def show(self, services: Services, data: ModelBody) -> dict[str, Any]:
        """The catalog entry, what is installed of it, its sandbox and whether it is loaded."""
        entry = services.registry.resolve(_requested(data))
        body = entry_json(services, entry)
        try:
            manifest = services.store.manifest(entry.name)
        except NotInstalled:
            body["files"] = []
            body["size"] = entry.size_bytes
        else:
            body["files"] = msgspec.to_builtins(manifest.files)
            body["size"] = manifest.total_size
            body["revision"] = manifest.revision
            body["installed_at"] = manifest.installed_at
            body["path"] = str(services.store.path(entry.name))
        sandbox = services.sandboxes.get(entry.adapter)
        body["sandbox"] = str(sandbox.path) if sandbox is not None else None
        body["loaded"] = any(m.name == entry.name for m in services.scheduler.loaded())
        return body

    @delete("/delete", status_code=200)
    async def remove(self, services: Services, data: ModelBody) -> dict[str, Any]:
        """Remove an installed model; a loaded idle one is unloaded first, a busy one refused."""
        return await remove_model(services, _requested(data))

    @get("/search")
    async def search(
        self,
        services: Services,
        q: str | None = None,
        model_type: Literal["stt", "tts"] | None = Parameter(query="type", default=None),
    ) -> dict[str, Any]:
        """Catalog entries whose name, alias, adapter, description or language matches ``q``."""
        found = services.registry.search(q, model_type)
        return {"models": [entry_json(services, e) for e in found]}

    @post("/register", status_code=200)
    async def register(self, services: Services, data: RegisterBody) -> dict[str, Any]:
        """Add a user catalog entry (kept under <VOX_HOME>/catalog) for `vox pull --as`."""
        try:
            validate_name(data.name)
        except InvalidModelName as exc:
            raise BadRequest(str(exc), param="name") from exc
        types = {e.adapter: e.type for e in services.registry.all()}
        kind = data.type or types.get(data.adapter)
        if kind is None:
            known = ", ".join(sorted(types))
            raise BadRequest(
                f"unknown adapter '{data.adapter}' (known: {known}); pass type stt or tts",
                param="adapter",
            )
        try:
            source = _parse_source(data)
            entry = CatalogEntry(
                name=data.name,
                type=kind,
                adapter=data.adapter,
                source=source,
                description=data.description or f"user model from {data.source}",
                license=data.license,
                sample_rate=data.sample_rate,
                voices=data.voices,
            )
        except (ValueError, msgspec.ValidationError) as exc:
            raise BadRequest(str(exc), param="source") from exc
        installed = services.store.is_installed(entry.name)
        if (
            installed
            and entry.name in services.registry
            and services.registry.get(entry.name) != entry
        ):
            raise Conflict(
                f"model '{entry.name}' is installed from another source; "
                f"`vox rm {entry.name}` first"
            )
        try:
            path = services.registry.save_user(entry)
        except CatalogError as exc:
            raise BadRequest(str(exc), param="name") from exc
        return {"status": "success", "model": entry.name, "file": str(path)}


async def remove_model(services: Services, requested: str) -> dict[str, Any]:
    """Remove an installed model: DELETE /api/delete and vox-runtime's /v1/models/{name}."""
    try:
        name = services.registry.resolve(requested).name
    except KeyError:
        name = validate_name(requested)  # installed from an entry since removed
    if name in services.puller.in_progress():
        raise Conflict(f"model '{name}' is being pulled; wait for the pull to finish")
    for model in services.scheduler.loaded():
        if model.name == name and model.refcount > 0:
            raise Conflict(
                f"model '{name}' is serving {model.refcount} request(s); retry when idle"
            )
    unloaded = await services.scheduler.unload(name)
    services.store.remove(name)  # NotInstalled -> 404
    return {"status": "success", "model": name, "unloaded": unloaded}

"""Model management routes: show, delete, search, register a user entry, upload a directory."""

from __future__ import annotations

import asyncio
import io
from pathlib import PurePosixPath
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter
from vox_sandboxes import parse_package

from vox_control.errors import BadRequest, VoxError
from vox_control.routes.openapi import MODEL_OR_NAME, UPLOAD, errors
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
from vox_control.store.sources.local import (
    BadUpload,
    ChunkReader,
    LocalDirRefused,
    allowed_dir,
)
from vox_control.validation import JSON_MAX_BYTES

TAR = "application/x-tar"


class Conflict(VoxError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class ModelBody(msgspec.Struct, forbid_unknown_fields=False):
    model: str | None = None
    name: str | None = None  # Ollama's older field name


class RegisterBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    # hf://owner/repo[@revision], or an absolute directory under a --allow-local-dir root
    source: str
    adapter: str
    type: Literal["stt", "tts"] | None = None
    revision: str | None = None
    allow_patterns: list[str] = []
    subfolder: str = ""
    description: str = ""
    license: str = ""
    sample_rate: int | None = None
    voices: list[str] = []
    # name==version, or a .whl file / project dir under a --allow-local-dir root
    adapter_package: str | None = None
    # Replace a user entry of this name that names another source.
    force: bool = False


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


def _parse_source(body: RegisterBody, services: Services) -> Source:
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
    # Missing, unreadable and forbidden paths get one answer: nothing about the server's
    # files leaks to a client that guesses paths.
    if not PurePosixPath(raw).is_absolute():
        raise LocalDirRefused
    return LocalSource(path=str(allowed_dir(raw, services.settings.local_dir_roots)))


def _adapter_package(spec: str | None, services: Services) -> str | None:
    """A package spec from a client: a path must lie under a --allow-local-dir root, as a
    model directory must (installing a package runs its code as the server's user)."""
    if spec is None:
        return None
    if not services.settings.allow_adapter_packages:
        raise BadRequest(
            "this server does not install adapter packages named by clients "
            "(start it with --allow-adapter-packages)",
            param="adapter_package",
        )
    try:
        parse_package(spec)
    except ValueError as exc:
        raise BadRequest(str(exc), param="adapter_package") from exc
    if not spec.strip().startswith("/"):
        return spec.strip()
    path = PurePosixPath(spec.strip())
    try:
        parent = allowed_dir(str(path.parent), services.settings.local_dir_roots)
    except LocalDirRefused as exc:
        raise BadRequest(str(exc), param="adapter_package") from exc
    if path.suffix == ".whl":
        return str(parent / path.name)
    try:
        return str(allowed_dir(str(path), services.settings.local_dir_roots))
    except LocalDirRefused as exc:
        raise BadRequest(str(exc), param="adapter_package") from exc


def _check_entry(services: Services, entry: CatalogEntry, *, upload: bool = False) -> None:
    """Refuse a user entry that would shadow a catalog name or replace another installed model.

    An upload may replace an uploaded (local) model of its name: the user sent new files.
    """
    if entry.name in services.registry and services.store.is_installed(entry.name):
        old = services.registry.get(entry.name)
        if not (isinstance(old.source, LocalSource) if upload else old == entry):
            raise Conflict(
                f"model '{entry.name}' is installed from another source; "
                f"`vox rm {entry.name}` first"
            )
    try:
        services.registry.check_user_name(entry.name)
    except CatalogError as exc:
        raise BadRequest(str(exc), param="name") from exc


def _save_entry(services: Services, entry: CatalogEntry) -> str:
    try:
        return str(services.registry.save_user(entry))
    except CatalogError as exc:
        raise BadRequest(str(exc), param="name") from exc


def _user_entry(
    services: Services,
    name: str,
    adapter: str,
    kind: Literal["stt", "tts", "vad"] | None,
    source: Source,
    **extra: Any,
) -> CatalogEntry:
    """A user entry for ``source``; the adapter's type comes from the catalog if not given."""
    try:
        validate_name(name)
    except InvalidModelName as exc:
        raise BadRequest(str(exc), param="name") from exc
    types = {e.adapter: e.type for e in services.registry.all()}
    kind = kind or types.get(adapter)
    if kind is None:
        known = ", ".join(sorted(types))
        raise BadRequest(
            f"unknown adapter '{adapter}' (known: {known}); pass type stt or tts", param="adapter"
        )
    try:
        return CatalogEntry(name=name, type=kind, adapter=adapter, source=source, **extra)
    except (ValueError, msgspec.ValidationError) as exc:
        raise BadRequest(str(exc), param="source") from exc


class ModelsController(Controller):
    path = "/api"
    tags = ["models"]  # noqa: RUF012

    @post(
        "/show",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(400, 404, 413),
        operation_class=MODEL_OR_NAME,
    )
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
        sandbox = services.sandboxes.get(entry.adapter, entry.adapter_package)
        body["sandbox"] = str(sandbox.path) if sandbox is not None else None
        body["loaded"] = any(m.name == entry.name for m in services.scheduler.loaded())
        return body

    @delete(
        "/delete",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(400, 404, 409, 413),
        operation_class=MODEL_OR_NAME,
    )
    async def remove(self, services: Services, data: ModelBody) -> dict[str, Any]:
        """Remove an installed model; a loaded idle one is unloaded first, a busy one refused."""
        return await remove_model(services, _requested(data))

    @get("/search", responses=errors(400))
    async def search(
        self,
        services: Services,
        q: str | None = None,
        model_type: Literal["stt", "tts"] | None = Parameter(query="type", default=None),
    ) -> dict[str, Any]:
        """Catalog entries whose name, alias, adapter, description or language matches ``q``."""
        found = services.registry.search(q, model_type)
        return {"models": [entry_json(services, e) for e in found]}

    @post(
        "/register",
        status_code=200,
        request_max_body_size=JSON_MAX_BYTES,
        responses=errors(400, 409, 413),
    )
    async def register(self, services: Services, data: RegisterBody) -> dict[str, Any]:
        """Add a user catalog entry (kept under <VOX_HOME>/catalog) for `vox pull --as`."""
        try:
            source = _parse_source(data, services)
        except LocalDirRefused as exc:
            raise BadRequest(str(exc), param="source") from exc
        except (ValueError, msgspec.ValidationError) as exc:
            raise BadRequest(str(exc), param="source") from exc
        entry = _user_entry(
            services,
            data.name,
            data.adapter,
            data.type,
            source,
            description=data.description or f"user model from {data.source}",
            license=data.license,
            sample_rate=data.sample_rate,
            voices=data.voices,
            adapter_package=_adapter_package(data.adapter_package, services),
        )
        _check_entry(services, entry)
        old = services.registry.get(entry.name) if entry.name in services.registry else None
        if old is not None and old != entry and not data.force:
            raise Conflict(
                f"'{entry.name}' is already registered from another source; pass force "
                "(`vox pull ... --force`) to replace it"
            )
        path = _save_entry(services, entry)
        # `created`: nothing was registered under this name before, so a client whose pull
        # then fails removes the entry again (vox pull does) and leaves no stale name behind.
        return {"status": "success", "model": entry.name, "file": path, "created": old is None}

    @post(
        "/upload",
        status_code=200,
        request_max_body_size=None,
        responses=errors(400, 409, 413, 422, 503),
        operation_class=UPLOAD,
    )
    async def upload(
        self,
        services: Services,
        request: Request[Any, Any, Any],
        name: str,
        adapter: str,
        model_type: Literal["stt", "tts"] | None = Parameter(query="type", default=None),
        path: str = Parameter(default="/uploaded", description="the client's directory, noted"),
        adapter_package: str | None = None,
    ) -> dict[str, Any]:
        """Install a model from a tar stream of its files (`vox pull ./dir` sends one).

        The client reads its own files and sends them, so the server never opens a path a
        client names. Only ``application/x-tar`` bodies: a web page cannot send one without a
        CORS preflight. The sandbox is prepared first; the model is listed once both are done.
        """
        if request.headers.get("content-type", "").split(";")[0].strip() != TAR:
            raise BadRequest(f"the body must be a tar stream ({TAR})")
        try:
            source = LocalSource(path=path)
        except ValueError as exc:
            raise BadRequest(str(exc), param="path") from exc
        entry = _user_entry(
            services,
            name,
            adapter,
            model_type,
            source,
            description=f"user model from {path}",
            adapter_package=_adapter_package(adapter_package, services),
        )
        _check_entry(services, entry, upload=True)
        reader = io.BufferedReader(ChunkReader(request.stream(), asyncio.get_running_loop()))
        try:
            manifest = await services.puller.upload(entry, reader)
        except BadUpload as exc:
            raise BadRequest(str(exc)) from exc
        # Kept only once installed: a failed upload leaves no entry behind.
        _save_entry(services, entry)
        # A loaded runner still holds the old files: the next request loads the new ones.
        unloaded = await services.scheduler.unload(entry.name)
        return {
            "status": "success",
            "model": entry.name,
            "files": len(manifest.files),
            "unloaded": unloaded,
        }


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
    try:
        services.store.remove(name)
    except NotInstalled:
        # A user entry whose pull never finished has no files, only its name: removing it is
        # what `vox rm` means. Anything else not installed stays a 404.
        if not services.registry.remove_user(name):
            raise
    else:
        services.registry.remove_user(name)  # a user entry goes with its files
    return {"status": "success", "model": name, "unloaded": unloaded}

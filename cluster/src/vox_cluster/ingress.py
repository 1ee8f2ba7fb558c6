"""The ingress: reads the model from each request and routes it to the replica that holds it.

Model-bearing requests go through `handle.options(multiplexed_model_id=model)`, so Ray's router
prefers a replica that already has the model loaded. /api/ps answers every node's models
merged (from the registry's snapshots); /nodes lists the nodes; other requests go to any node.
Bodies stream through in both directions' natural unit: the request body is read whole
(bounded by MAX_BODY, as a node bounds uploads), the response streams chunk by chunk.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from vox_cluster.node import NODE_HEADER, ProxyRequest

# Vox's own default upload limit (Settings.max_upload_bytes); a node refuses more anyway.
MAX_BODY = 200 * 1024 * 1024
MAX_MODEL_CHARS = 200
STALE_AFTER = 10.0  # seconds without a snapshot before a node counts as gone
# Paths whose default model is the TTS or STT default when the request names none.
TTS_PATHS = ("/v1/audio/speech", "/api/synthesize")
STT_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations", "/api/transcribe")
DEFAULT_TTS = "piper:en-us-joe-medium"
DEFAULT_STT = "whisper:tiny.en"


class Registry:
    """The nodes' latest /api/ps snapshots, keyed by node name (one replica of its own)."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[float, dict[str, Any]]] = {}

    def put(self, name: str, info: dict[str, Any]) -> None:
        self.nodes[name] = (time.monotonic(), info)

    def live(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        for name in [n for n, (at, _) in self.nodes.items() if now - at > STALE_AFTER]:
            del self.nodes[name]
        return [info for _, info in sorted(self.nodes.values(), key=lambda e: e[1]["node"])]


async def request_model(request: Request, body: bytes) -> str:
    """The model a request names: JSON `model`, multipart form `model` or `?model=`.

    Requests to a speech or transcription route that name none get Vox's default for it, so
    they stick to a replica like any other; the rest (listings, health) name no model.
    """
    model: object = None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json" and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            model = parsed.get("model") or parsed.get("name")
    elif kind == "multipart/form-data":
        form = await request.form(max_files=8, max_fields=64)
        value = form.get("model")
        model = None if isinstance(value, UploadFile) else value
        await form.close()
    model = model or request.query_params.get("model")
    if not model:
        path = request.url.path
        model = DEFAULT_TTS if path in TTS_PATHS else DEFAULT_STT if path in STT_PATHS else ""
    if not isinstance(model, str) or len(model) > MAX_MODEL_CHARS:
        return ""  # the node answers a malformed model with its own 4xx
    return model


def merged_ps(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Every node's /api/ps in one: each model and failure tagged with its node."""
    models: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    loading = None
    for info in nodes:
        ps = info["ps"]
        models += [{**m, "node": info["node"]} for m in ps.get("models", [])]
        failed += [{**f, "node": info["node"]} for f in ps.get("failed") or []]
        if loading is None and ps.get("loading"):
            loading = {**ps["loading"], "node": info["node"]}
    return {"models": models, "loading": loading, "failed": failed}


class VoxIngress:
    """The HTTP entry point of the application (`route_prefix` /)."""

    def __init__(self, nodes: DeploymentHandle[Any], registry: DeploymentHandle[Any]) -> None:
        self.nodes = nodes
        self.registry = registry

    async def __call__(self, request: Request) -> Response:
        path = request.url.path
        if request.method == "GET" and path in ("/api/ps", "/nodes"):
            live: list[dict[str, Any]] = await self.registry.live.remote()
            if path == "/nodes":
                return JSONResponse({"nodes": [_summary(n) for n in live]})
            return JSONResponse(merged_ps(live))
        if request.method == "GET" and path == "/api/health":
            live = await self.registry.live.remote()
            return JSONResponse({"status": "ok", "nodes": len(live)})
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            return _error(413, f"the body exceeds {MAX_BODY} bytes")
        body = await _read(request)
        if body is None:
            return _error(413, f"the body exceeds {MAX_BODY} bytes")
        model = await request_model(request, body)
        proxied = ProxyRequest(
            method=request.method,
            path=path,
            query=request.url.query,
            headers=tuple(request.headers.items()),
            body=body,
        )
        handle = self.nodes.options(multiplexed_model_id=model, stream=True)
        response = handle.forward.remote(proxied)
        assert isinstance(response, DeploymentResponseGenerator)  # stream=True above
        stream: AsyncIterator[Any] = response.__aiter__()
        head: dict[str, Any] = await anext(stream)
        return StreamingResponse(
            _chunks(stream), status_code=head["status"], headers=_headers(head["headers"])
        )


def _summary(info: dict[str, Any]) -> dict[str, Any]:
    models = [m["name"] for m in info["ps"].get("models", [])]
    keys = ("node", "host", "pid", "url")
    return {**{k: info[k] for k in keys}, "models": models}


async def _read(request: Request) -> bytes | None:
    """The whole body, or None past MAX_BODY (a chunked upload has no length to check first)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        parts.append(chunk)
    body = b"".join(parts)
    request._body = body  # starlette re-reads the cached body when parsing the form
    return body


async def _chunks(stream: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


def _headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    # A node answers one value per header name except Set-Cookie, which Vox never sends.
    return {k: v for k, v in pairs}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status)


__all__ = ["NODE_HEADER", "Registry", "VoxIngress", "merged_ps", "request_model"]

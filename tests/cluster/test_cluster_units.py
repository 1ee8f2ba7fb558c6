"""vox_cluster without Ray running: reading the model, merging /api/ps, headers, arguments."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("ray", reason="the cluster tests need `uv sync --group cluster`")

from starlette.requests import Request
from vox_cluster import ingress
from vox_cluster.app import build
from vox_cluster.ingress import Registry, merged_ps, request_model
from vox_cluster.node import forward_headers


def _request(path: str, body: bytes, content_type: str, query: str = "") -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"content-type", content_type.encode())],
    }
    request = Request(scope, receive)
    request._body = body
    return request


async def test_model_from_json_form_query_and_defaults() -> None:
    body = b'{"model": "kokoro:af", "input": "hi"}'
    assert await request_model(_request("/v1/audio/speech", body, "application/json"), body) == (
        "kokoro:af"
    )
    form = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper:base\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n'
        b"--b--\r\n"
    )
    kind = "multipart/form-data; boundary=b"
    assert await request_model(_request("/api/transcribe", form, kind), form) == "whisper:base"
    assert await request_model(_request("/api/x", b"", "text/plain", "model=a:b"), b"") == "a:b"
    # Nothing named: the route's default, or no model at all for listings.
    assert await request_model(_request("/v1/audio/speech", b"{}", "application/json"), b"{}") == (
        ingress.DEFAULT_TTS
    )
    assert await request_model(_request("/api/list", b"", "text/plain"), b"") == ""


async def test_hostile_model_values_route_nowhere() -> None:
    for body in (b'{"model": 5}', b'{"model": "' + b"x" * 500 + b'"}', b"[1]", b"{not json"):
        request = _request("/api/pull", body, "application/json")
        assert await request_model(request, body) == ""


def test_merged_ps_tags_every_model_with_its_node() -> None:
    nodes = [
        {"node": "a", "ps": {"models": [{"name": "m1"}], "loading": None, "failed": []}},
        {"node": "b", "ps": {"models": [{"name": "m2"}], "loading": {"name": "m3"}}},
    ]
    merged = merged_ps(nodes)
    assert merged["models"] == [{"name": "m1", "node": "a"}, {"name": "m2", "node": "b"}]
    assert merged["loading"] == {"name": "m3", "node": "b"}


def test_registry_forgets_silent_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    registry.put("a", {"node": "a"})
    registry.put("b", {"node": "b"})
    assert [n["node"] for n in registry.live()] == ["a", "b"]
    registry.nodes["a"] = (registry.nodes["a"][0] - ingress.STALE_AFTER - 1, {"node": "a"})
    assert [n["node"] for n in registry.live()] == ["b"]


def test_forward_headers_drop_hop_by_hop_and_host() -> None:
    headers = (("Host", "evil"), ("Connection", "close"), ("Authorization", "Bearer t"))
    assert forward_headers(headers) == [("Authorization", "Bearer t")]


def test_build_refuses_unknown_arguments() -> None:
    with pytest.raises(ValueError, match="replicaz"):
        build({"replicaz": 2})

"""Hostile request bodies through the real server: deep JSON, oversized JSON, NUL in speech text,
and a bad language refused before a stream says `ready` (issue 13's minor findings)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import VoxServer

pytestmark = pytest.mark.e2e

STT = "whisper:tiny.en"
TTS = "piper:en-us-joe-medium"
# 100,000 levels: the decoders' recursion limit is about 1,000, so this was a 500 (HTTP) and a
# close 4500 with no error event (WebSocket).
DEEP = "[" * 100_000 + "]" * 100_000
JSON_ROUTES = [
    ("POST", "/api/pull"),
    ("POST", "/api/show"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/register"),
    ("POST", "/api/load"),
    ("POST", "/api/unload"),
    ("POST", "/api/synthesize"),
    ("POST", "/v1/audio/speech"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("hostile")
    vox = VoxServer(root / "home", root / "server.log")
    vox.start()
    with vox.client() as client:
        for name in (STT, TTS):
            response = client.post("/api/pull", json={"model": name, "stream": False})
            assert response.status_code == 200, response.text
    yield vox
    vox.stop()


def ws_url(server: VoxServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def _healthy(server: VoxServer) -> None:
    assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_deep_json_is_a_400_on_every_json_route(
    server: VoxServer, method: str, path: str, content_type: str
) -> None:
    body = '{"model": "whisper:tiny.en", "input": "hi", "x": ' + DEEP + "}"
    with server.client(timeout=60) as client:
        response = client.request(
            method, path, content=body.encode(), headers={"Content-Type": content_type}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    _healthy(server)


def test_moderate_nesting_and_brackets_in_strings_still_work(server: VoxServer) -> None:
    nested: object = 1
    for _ in range(20):
        nested = {"a": [nested]}
    body = {"model": STT, "extra": nested, "note": "[" * 10_000 + "{" * 10_000}
    with server.client(timeout=60) as client:
        response = client.post("/api/show", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == STT


def test_oversized_json_is_a_413(server: VoxServer) -> None:
    body = json.dumps({"input": "a" * 3_000_000, "model": TTS}).encode()
    with server.client(timeout=60) as client:
        response = client.post("/v1/audio/speech", content=body)
    assert response.status_code == 413, response.text
    assert "error" in response.json()
    _healthy(server)


@pytest.mark.parametrize(
    ("path", "field"),
    [("/v1/audio/speech", "input"), ("/api/synthesize", "text"), ("/api/synthesize", "input")],
)
def test_nul_in_speech_text_is_a_400(server: VoxServer, path: str, field: str) -> None:
    body = {field: "hello\x00 world", "model": TTS, "response_format": "wav"}
    with server.client(timeout=120) as client:
        response = client.post(path, json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == field
        assert "NUL" in error["message"]
        # The same text without the NUL is spoken: only the NUL was refused.
        body[field] = "hello world"
        ok = client.post(path, json=body)
    assert ok.status_code == 200, ok.text
    assert ok.content[:4] == b"RIFF"


def _until_close(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every JSON event until the server closes the connection."""
    events = []
    while True:
        try:
            message = ws.recv(timeout=60)
        except ConnectionClosed:
            return events
        if isinstance(message, str):
            events.append(json.loads(message))


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions/stream", "/v1/audio/speech/stream"])
def test_deep_json_on_a_stream_is_an_error_event(server: VoxServer, path: str) -> None:
    with connect(ws_url(server, path), open_timeout=30, max_size=None) as ws:
        ws.send('{"type": "config", "x": ' + DEEP + "}")
        events = _until_close(ws)
        close = ws.close_code
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["code"] == "invalid_json"
    assert close == 1008
    _healthy(server)


@pytest.mark.parametrize(("kind", "model"), [("tts", TTS), ("stt", STT)])
def test_deep_json_on_realtime_is_an_error_and_the_session_goes_on(
    server: VoxServer, kind: str, model: str
) -> None:
    with connect(ws_url(server, f"/v1/realtime/{kind}?model={model}"), open_timeout=60) as ws:
        first = json.loads(ws.recv(timeout=60))
        assert first["type"] == "server.hello"
        ws.send('{"type": "server.status", "x": ' + DEEP + "}")
        ws.send(json.dumps({"type": "server.status"}))
        events = [json.loads(ws.recv(timeout=60))]
        while events[-1]["type"] != "server.status":
            events.append(json.loads(ws.recv(timeout=60)))
    errors = [e for e in events if e["type"] == "error"]
    assert [e["error"]["code"] for e in errors] == ["invalid_json"]
    assert any(e["type"] == "server.status" for e in events)


def test_nul_in_stream_text_is_refused(server: VoxServer) -> None:
    with connect(ws_url(server, "/v1/audio/speech/stream"), open_timeout=60) as ws:
        ws.send(json.dumps({"type": "config", "model": TTS, "response_format": "pcm16"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        ws.send(json.dumps({"type": "text", "text": "hello\x00 world"}))
        events = _until_close(ws)
        close = ws.close_code
    assert events[-1]["type"] == "error"
    assert events[-1]["param"] == "text"
    assert close == 4400


def test_nul_in_realtime_text_is_an_error_event(server: VoxServer) -> None:
    with connect(ws_url(server, f"/v1/realtime/tts?model={TTS}"), open_timeout=60) as ws:
        assert json.loads(ws.recv(timeout=60))["type"] == "server.hello"
        ws.send(json.dumps({"type": "input_text.append", "text": "hi\x00"}))
        error = json.loads(ws.recv(timeout=60))
        ws.send(json.dumps({"type": "server.status"}))
        status = json.loads(ws.recv(timeout=60))
    assert error["type"] == "error"
    assert error["error"]["code"] == "invalid_event"
    assert status["type"] == "server.status"
    assert status["buffered_chars"] == 0


@pytest.mark.parametrize("language", ["xx", "english!", "e" * 200])
def test_bad_language_is_refused_before_ready(server: VoxServer, language: str) -> None:
    with connect(ws_url(server, "/v1/audio/transcriptions/stream"), open_timeout=60) as ws:
        ws.send(json.dumps({"type": "config", "model": STT, "language": language}))
        events = _until_close(ws)
        close = ws.close_code
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["param"] == "language"
    assert close == 4400


def test_server_log_has_no_tracebacks(server: VoxServer) -> None:
    """Every hostile body above was answered as a client error, not an internal one."""
    log = server.log()
    assert "RecursionError" not in log
    assert "embedded null character" not in log

"""Every error kind through every transport: the status, code and close code each one gets.

One fake scheduler raises the error under test when a model is used; the same error then
reaches the client over the native HTTP route, the OpenAI route, an SSE stream, the streaming
WebSocket and the Pipecat realtime socket. Every answer names the request id; none carries the
server-only detail (runner stderr, uv's log, a traceback).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from vox_control.errors import (
    BadRequest,
    LoadError,
    ModelNotFound,
    Overloaded,
    Problem,
    Unavailable,
    classify,
)
from vox_control.renderers import ws_close_code, ws_code
from vox_control.runner_client import RunnerDied, RunnerRequestError
from vox_control.store.registry import InvalidModelName, UnknownModel
from vox_control.store.sources.base import IntegrityError, OfflineError
from vox_sandboxes import SandboxError

from tests.openai.test_openai_routes import WAV, FakeScheduler, env

__all__ = ["env"]  # the fixture, shared with the OpenAI route tests

SECRET = "SECRET-/home/alice/.vox/models/whisper pid 4242 other request 31.2s"
Env = tuple[TestClient[Any], FakeScheduler]


@dataclass(frozen=True)
class Case:
    name: str
    error: Exception
    status: int  # HTTP status (native and OpenAI routes)
    code: str  # HTTP, SSE code
    ws: tuple[str, int]  # streaming WebSocket: code, close code
    realtime: tuple[str, int]  # Pipecat realtime: code, close code


def _died() -> RunnerDied:
    return RunnerDied("whisper:tiny.en", -11, ["Fatal Python error: Segmentation fault", SECRET])


CASES = [
    Case(
        "model not found",
        ModelNotFound("model 'x:y' is not pulled"),
        404,
        "model_not_found",
        ("model_not_found", 4404),
        ("model_not_found", 4404),
    ),
    Case(
        "unknown model",
        UnknownModel("x:y", ["whisper:tiny.en"]),
        404,
        "model_not_found",
        ("model_not_found", 4404),
        ("model_not_found", 4404),
    ),
    Case(
        "invalid name",
        InvalidModelName("'x' is not family:tag"),
        400,
        "invalid_request",
        ("invalid_config", 4400),
        ("invalid_config", 4400),
    ),
    Case(
        "bad request",
        BadRequest("unknown voice 'nobody'", param="voice"),
        400,
        "invalid_request",
        ("invalid_config", 4400),
        ("invalid_config", 4400),
    ),
    Case(
        "runner bad_request",
        RunnerRequestError("bad_request", "unsupported language 'xx'"),
        400,
        "bad_request",
        ("bad_request", 4400),
        ("invalid_config", 4400),
    ),
    Case(
        "queue full",
        Overloaded("too many requests queued", headers={"Retry-After": "2"}),
        429,
        "queue_full",
        ("queue_full", 1013),
        ("busy", 1013),
    ),
    Case(
        "no memory",
        Unavailable("cannot load: not enough memory", code="insufficient_memory"),
        503,
        "insufficient_memory",
        ("insufficient_memory", 1011),
        ("backend_error", 1011),
    ),
    Case(
        "offline",
        OfflineError("VOX_OFFLINE is set"),
        503,
        "offline",
        ("offline", 1011),
        ("backend_error", 1011),
    ),
    Case(
        "integrity",
        IntegrityError("model.bin", "aa", "bb"),
        502,
        "integrity_error",
        ("integrity_error", 1011),
        ("backend_error", 1011),
    ),
    Case(
        "load failed",
        LoadError.because("could not load whisper:tiny.en", _died()),
        500,
        "load_failed",
        ("load_failed", 1011),
        ("backend_error", 1011),
    ),
    Case(
        "runner died",
        _died(),
        502,
        "runner_died",
        ("runner_died", 1011),
        ("backend_error", 1011),
    ),
    Case(
        "inference failed",
        RunnerRequestError("inference_failed", "the model raised"),
        500,
        "inference_failed",
        ("inference_failed", 1011),
        ("backend_error", 1011),
    ),
    Case(
        "sandbox",
        SandboxError(f"could not create the sandbox for piper: uv exited 1: {SECRET}\nmore log"),
        503,
        "sandbox_unavailable",
        ("sandbox_unavailable", 1011),
        ("backend_error", 1011),
    ),
    Case(
        "bug",
        RuntimeError(SECRET),
        500,
        "internal_error",
        ("internal_error", 1011),
        ("internal_error", 1011),
    ),
    Case(
        "nul byte",
        ValueError("embedded null byte"),
        400,
        "invalid_request",
        ("invalid_config", 4400),
        ("invalid_config", 4400),
    ),
    Case(
        "deep json",
        RecursionError("maximum recursion depth exceeded"),
        400,
        "invalid_json",
        ("invalid_config", 4400),
        ("invalid_json", 4400),
    ),
]
IDS = [case.name for case in CASES]


def _clean(text: str) -> None:
    assert "SECRET" not in text
    assert "Traceback" not in text
    assert "Fatal Python error" not in text
    assert "more log" not in text


def _check_http(response: Any, case: Case) -> None:
    assert response.status_code == case.status, response.text
    body = response.json()
    assert body["error"]["code"] == case.code
    assert body["error"]["type"] == classify(case.error).type
    assert body["request_id"] == response.headers["x-request-id"]
    _clean(response.text)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_native_route(env: Env, case: Case) -> None:
    client, scheduler = env
    scheduler.error = case.error
    response = client.post("/api/synthesize", json={"input": "Hi."})
    _check_http(response, case)
    _check_http(client.post("/api/transcribe", files={"file": ("a.wav", WAV)}), case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_openai_route(env: Env, case: Case) -> None:
    client, scheduler = env
    scheduler.error = case.error
    _check_http(client.post("/v1/audio/speech", json={"input": "Hi."}), case)
    if case.status == 429:
        assert client.post("/v1/audio/speech", json={"input": "Hi."}).headers["retry-after"] == "2"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sse_stream(env: Env, case: Case) -> None:
    client, scheduler = env
    scheduler.error = case.error
    response = client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", WAV)}, data={"stream": "true"}
    )
    assert response.status_code == 200  # the stream had begun: the error is its last event
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line]
    assert events[-1]["error"]["code"] == case.code
    assert events[-1]["request_id"] == response.headers["x-request-id"]
    _clean(response.text)


def _close_code(socket: Any) -> int:
    with pytest.raises(WebSocketDisconnect) as closed:
        socket.receive()
    return closed.value.code


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("path", ["/v1/audio/transcriptions/stream", "/v1/audio/speech/stream"])
def test_websocket_stream(env: Env, case: Case, path: str) -> None:
    client, scheduler = env
    scheduler.error = case.error
    with client.websocket_connect(path) as socket:
        socket.send_text(json.dumps({"type": "config"}))
        event = socket.receive_json()
        closed = _close_code(socket)
    assert (event["code"], event["close_code"]) == case.ws, event
    assert closed == case.ws[1]
    assert event["request_id"].startswith("req_")
    _clean(json.dumps(event))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("path", ["/v1/realtime/stt", "/v1/realtime/tts"])
def test_realtime_socket(env: Env, case: Case, path: str) -> None:
    client, scheduler = env
    scheduler.error = case.error
    with client.websocket_connect(path) as socket:
        event = socket.receive_json()
        closed = _close_code(socket)
    assert event["type"] == "error"
    assert (event["error"]["code"], closed) == case.realtime, event
    assert event["error"]["request_id"].startswith("req_")
    if case.status == 429:
        assert event["retry_after_ms"] > 0
    _clean(json.dumps(event))


# ---------------------------------------------------------------------- Litestar's own errors


def test_framework_errors_share_the_envelope(env: Env) -> None:
    client, _ = env
    cases = [
        (client.get("/v1/nowhere"), 404, "not_found"),
        (client.delete("/v1/audio/speech"), 405, "method_not_allowed"),
        (client.post("/v1/audio/speech", content=b"x" * 2_100_000), 413, "payload_too_large"),
        (client.post("/v1/audio/speech", json={"input": 5}), 400, "invalid_request"),
        (client.post("/v1/audio/speech", json={"input": "a\u0000b"}), 400, "invalid_request"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert response.json()["request_id"] == response.headers["x-request-id"]


def test_deeply_nested_json_is_a_400(env: Env) -> None:
    client, _ = env
    body = b"[" * 100_000 + b"]" * 100_000
    response = client.post(
        "/v1/audio/speech", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json_on_the_sockets(env: Env) -> None:
    client, _ = env
    with client.websocket_connect("/v1/audio/transcriptions/stream") as socket:
        socket.send_text(DEEP)
        event = socket.receive_json()
        assert (event["code"], event["close_code"]) == ("invalid_json", 1008)
        assert _close_code(socket) == 1008
    with client.websocket_connect("/v1/realtime/stt") as socket:
        assert socket.receive_json()["type"] == "server.hello"
        socket.receive_json()
        socket.receive_json()  # the two session.created events
        socket.send_text(DEEP)
        event = socket.receive_json()
        assert event["error"]["code"] == "invalid_json"  # and the session goes on
        socket.send_text(json.dumps({"type": "input_audio_buffer.clear"}))
        assert socket.receive_json()["type"] == "input_audio_buffer.cleared"


def test_request_id_is_the_clients_when_sane(env: Env) -> None:
    client, _ = env
    mine = client.get("/v1/nowhere", headers={"X-Request-Id": "trace-42.a:b"})
    assert mine.headers["x-request-id"] == "trace-42.a:b"
    assert mine.json()["request_id"] == "trace-42.a:b"
    for hostile in ("a b", "x" * 65, "<script>", "../../etc"):
        response = client.get("/v1/nowhere", headers={"X-Request-Id": hostile})
        assert response.headers["x-request-id"].startswith("req_")
    assert client.get("/api/version").headers["x-request-id"].startswith("req_")


def test_foreign_exceptions_classify() -> None:
    class Body(msgspec.Struct):
        a: str

    try:
        msgspec.convert({"a": 1}, Body)
    except msgspec.ValidationError as exc:
        problem = classify(exc)
    assert (problem.status, problem.code, problem.param) == (400, "invalid_request", "a")
    assert classify(msgspec.DecodeError("bad")).code == "invalid_json"
    bug = classify(KeyError(SECRET))
    assert (bug.status, bug.code) == (500, "internal_error")
    assert "SECRET" not in bug.message
    assert "SECRET" in str(bug.detail)


def test_one_line_messages() -> None:
    problem = Problem(500, "server_error", "x", "m")
    assert ws_code(problem) == "x"
    assert ws_close_code(problem) == 1011
    long = classify(BadRequest("first line\nsecond line " + "y" * 1000))
    assert long.message == "first line"

"""The OpenAI Realtime session through Litestar's test client, with a fake VAD (RMS per
frame) and a fake transcriber: event order, turns, manual commits, idle timeout, session cap."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from litestar.di import Provide
from litestar.testing import create_test_client
from vox_control import inference
from vox_control.routes import openai_realtime as route
from vox_control.services import Services
from vox_control.sessions.oai_realtime_events import Limits
from vox_protocol import SpeechProbabilities, Transcript

URL = "/v1/realtime?intent=transcription"
RATE = 24000


class FakeScheduler:
    @contextlib.asynccontextmanager
    async def use(self, name: str, keep_alive: float | None = None) -> AsyncIterator[Any]:
        yield SimpleNamespace(
            name=name, info=SimpleNamespace(sample_rate=16000), runner=SimpleNamespace(in_flight=1)
        )


class FakeServices(Services):
    """Only what the session reaches: the scheduler, name mapping and manifests."""

    def __init__(self) -> None:
        self.scheduler = FakeScheduler()  # tests are not type-checked; duck-typed on purpose

    def model_name(self, requested: str | None, kind: str) -> str:
        return requested or "whisper:tiny.en"

    def manifest(self, name: str, kind: str | None = None) -> Any:
        return SimpleNamespace(type=kind or "stt", entry=SimpleNamespace(sample_rate=16000))


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    leftovers: dict[str, np.ndarray] = {}

    async def fake_vad(model: Any, pcm: np.ndarray, rate: int, stream: str, **kw: Any) -> Any:
        audio = np.concatenate([leftovers.get(stream, np.zeros(0, np.float32)), pcm])
        whole = len(audio) // 512 * 512
        leftovers[stream] = audio[whole:]
        frames = audio[:whole].reshape(-1, 512)
        probs = [1.0 if float(np.sqrt(np.mean(f**2))) > 0.05 else 0.0 for f in frames]
        return SpeechProbabilities(id=0, probabilities=probs)

    async def fake_transcribe(services: Any, model: Any, pcm: np.ndarray, *a: Any) -> Any:
        return Transcript(id=0, text=f"{len(pcm) / 16000:.3f} seconds")

    monkeypatch.setattr(inference, "detect_speech", fake_vad)
    monkeypatch.setattr(inference, "transcribe", fake_transcribe)
    services = FakeServices()
    with create_test_client(
        route_handlers=[route.openai_realtime],
        dependencies={"services": Provide(lambda: services, sync_to_thread=False)},
    ) as test_client:
        yield test_client


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _append(ws: Any, pcm: np.ndarray) -> None:
    data = (pcm * 32767).astype("<i2").tobytes()
    for start in range(0, len(data), 4800):
        piece = base64.b64encode(data[start : start + 4800]).decode()
        ws.send_json({"type": "input_audio_buffer.append", "audio": piece})


def _until(ws: Any, kind: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = ws.receive_json()
        seen.append(event)
        if event["type"] == kind:
            return event


def test_server_vad_turns_in_order(client: Any) -> None:
    silence = np.zeros(RATE, np.float32)
    seen: list[dict[str, Any]] = []
    with client.websocket_connect(URL) as ws:
        created = _until(ws, "session.created", seen)
        assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        _append(ws, np.concatenate([silence, _tone(1.0), silence, _tone(2.0), silence]))
        _until(ws, "conversation.item.input_audio_transcription.completed", seen)
        _until(ws, "conversation.item.input_audio_transcription.completed", seen)
    kinds = [e["type"] for e in seen]
    turn = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert kinds == ["session.created", *turn, *turn]
    started = [e for e in seen if e["type"] == "input_audio_buffer.speech_started"]
    stopped = [e for e in seen if e["type"] == "input_audio_buffer.speech_stopped"]
    # The tone starts at 1000 ms: reported 300 ms earlier (prefix padding), to the frame.
    assert abs(started[0]["audio_start_ms"] - 700) <= 32
    # It ends at 2000 ms; the turn ends after 500 ms of silence.
    assert abs(stopped[0]["audio_end_ms"] - 2500) <= 64
    done = [e for e in seen if e["type"].endswith(".completed")]
    assert [d["item_id"] for d in done] == [s["item_id"] for s in started]
    # Each turn's audio is exactly its span, from audio_start_ms (padding included) to
    # audio_end_ms (the silence included): 0.3 + 1.0 + 0.5 s and 0.3 + 2.0 + 0.5 s, to frames.
    spans = [
        (b["audio_end_ms"] - a["audio_start_ms"]) / 1000
        for a, b in zip(started, stopped, strict=True)
    ]
    assert [d["usage"]["seconds"] for d in done] == pytest.approx(spans, abs=0.002)
    assert spans == pytest.approx([1.8, 2.8], abs=0.1)
    # The transcript started early, once 200 ms of the silence were through the VAD: it has
    # the audio received by then, 300 ms less than the span give or take a VAD piece (160 ms).
    seconds = [float(d["transcript"].split()[0]) for d in done]
    for got, span in zip(seconds, spans, strict=True):
        assert span - 0.32 <= got <= span - 0.1
    committed = [e for e in seen if e["type"] == "input_audio_buffer.committed"]
    assert committed[1]["previous_item_id"] == committed[0]["item_id"]


def test_manual_commit_and_clear(client: Any) -> None:
    seen: list[dict[str, Any]] = []
    with client.websocket_connect(URL) as ws:
        _until(ws, "session.created", seen)
        ws.send_json({"type": "session.update", "session": {"turn_detection": None}})
        updated = _until(ws, "session.updated", seen)
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        _append(ws, _tone(0.5))
        ws.send_json({"type": "input_audio_buffer.clear"})
        _until(ws, "input_audio_buffer.cleared", seen)
        _append(ws, _tone(1.5))
        ws.send_json({"type": "input_audio_buffer.commit"})
        done = _until(ws, "conversation.item.input_audio_transcription.completed", seen)
    # The 0.5 s before the clear is gone (the streaming resampler holds back a few samples).
    assert float(done["transcript"].split()[0]) == pytest.approx(1.5, abs=0.005)
    assert "input_audio_buffer.speech_started" not in [e["type"] for e in seen]


def test_idle_timeout_ends_the_session(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(route, "LIMITS", Limits(idle_timeout_s=0.2))
    with client.websocket_connect(URL) as ws:
        assert ws.receive_json()["type"] == "session.created"
        error = ws.receive_json()
    assert error["error"]["code"] == "idle_timeout"


def test_session_cap_refuses_with_try_later(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(route, "_active", route.MAX_SESSIONS)
    with client.websocket_connect(URL) as ws:
        error = ws.receive_json()
    assert error["type"] == "error"
    assert error["error"]["code"] == "session_limit"

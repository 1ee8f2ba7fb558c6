"""End to end: the published pipecat clients (Python 3.12) against Vox's realtime routes on TCP."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import soxr
from websockets.sync.client import connect

from tests.conftest import VoxServer, wer
from tests.realtime.peers import drive
from tests.streaming.helpers import SCRIPT

pytestmark = pytest.mark.e2e

TTS = "piper:en-us-joe-medium"
STT = "whisper:tiny.en"


def uri(server: VoxServer, kind: str, model: str) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/realtime/{kind}?model={model}"


def check_response(response: dict, rate: int) -> None:
    """Gapless seq from 0, one response id, 20 ms frames (only the last shorter), then done."""
    assert response["types"] == ["input_text.committed", "response.created", "response.audio.done"]
    assert response["seqs"] == list(range(len(response["seqs"])))
    assert len(response["ids"]) == 1
    frame = rate * 20 // 1000 * 2
    assert max(response["frame_bytes"]) == frame
    assert response["last"]["response_id"] == response["ids"][0]


def test_piper_synthesis_rate_frames_and_status(pulled: VoxServer, tmp_path: Path) -> None:
    out = tmp_path / "joe.pcm"
    texts = [" ".join(SCRIPT[:2]), SCRIPT[2]]
    result = drive(
        "tts",
        "--uri",
        uri(pulled, "tts", TTS),
        *[arg for t in texts for arg in ("--text", t)],
        "--out",
        str(out),
    )
    hello = result["hello"]
    assert hello["audio"] == {"format": "pcm16", "rate": 22050, "channels": 1}
    assert hello["backend"]["model"] == TTS
    caps = hello["capabilities"]
    assert caps["voice_count"] == 1
    assert caps["ideal_words"] > 0
    assert caps["max_text_chars"] >= 2000
    for response in result["responses"]:
        check_response(response, 22050)
        assert response["committed"]["previous_event_id"] == "c1"
    # Every delta's audio at exactly 22050 Hz: the reported duration matches the bytes.
    total_ms = sum(r["last"]["duration_ms"] for r in result["responses"])
    assert result["pcm_bytes"] == out.stat().st_size
    assert abs(out.stat().st_size / 2 / 22.05 - total_ms) < 5
    status = result["status"]
    assert status["voices"] == ["joe"]
    assert status["queue_depth"] == 0
    assert status["audio"]["rate"] == 22050
    assert status["uptime_seconds"] >= 0
    assert any(m["name"] == TTS for m in status["vox"]["models"])
    assert result["closed"]["reason"] == "client_close"


def test_cancel_mid_response_no_audio_after_ack(pulled: VoxServer) -> None:
    result = drive("cancel", "--uri", uri(pulled, "tts", TTS), "--text", " ".join(SCRIPT[:12]))
    assert result["deltas_before"] > 0
    assert result["ack"]["type"] == "response.cancelled"
    assert result["before"][-1]["type"] == "response.cancelled"
    assert [e["type"] for e in result["after"]] == ["server.status"]  # no delta, no done
    assert result["again"] == ["input_text.committed", "response.created", "response.audio.done"]


def test_second_commit_on_one_connection_is_busy(pulled: VoxServer) -> None:
    result = drive("busy", "--uri", uri(pulled, "tts", TTS), "--text", " ".join(SCRIPT[:6]))
    own = result["own"]
    assert own["type"] == "error"
    assert own["error"]["code"] == "busy"
    assert own["retry_after_ms"] > 0
    assert own["previous_event_id"] == "own"


@pytest.mark.parametrize("transport", ["binary", "base64"])
def test_transcribe_a_tts_recording(pulled: VoxServer, tmp_path: Path, transport: str) -> None:
    text = " ".join(SCRIPT[3:7])
    out = tmp_path / "speech.pcm"
    spoken = drive("tts", "--uri", uri(pulled, "tts", TTS), "--text", text, "--out", str(out))
    assert spoken["responses"][0]["types"][-1] == "response.audio.done"
    pcm = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.float32) / 32768
    pcm16k = np.clip(soxr.resample(pcm, 22050, 16000), -1, 1)
    (tmp_path / "16k.pcm").write_bytes((pcm16k * 32767).astype("<i2").tobytes())
    args = ["--uri", uri(pulled, "stt", STT), "--pcm", str(tmp_path / "16k.pcm")]
    result = drive("stt", *args, *(["--base64"] if transport == "base64" else []))
    assert result["hello"]["audio"]["rate"] == 16000
    assert result["hello"]["backend"]["model"] == STT
    done = result["done"]
    assert done["type"] == "conversation.item.input_audio_transcription.completed", result
    assert wer(text, done["transcript"]) <= 0.10, done["transcript"]
    types = result["types"]
    assert types.index("input_audio_buffer.committed") < types.index(
        "conversation.item.input_audio_transcription.delta"
    )
    assert result["closed"]["reason"] == "client_close"
    assert result["status"]["uncommitted_bytes"] == 0


def _events(url: str, messages: list[dict | bytes], count: int) -> list[dict]:
    with connect(url, open_timeout=60) as ws:
        events = [json.loads(ws.recv(timeout=60))]
        for message in messages:
            ws.send(message if isinstance(message, bytes) else json.dumps(message))
        while len(events) < count:
            events.append(json.loads(ws.recv(timeout=60)))
    return events


def test_tts_protocol_errors(pulled: VoxServer) -> None:
    events = _events(
        uri(pulled, "tts", TTS),
        [
            {"type": "input_text.commit", "event_id": "e1"},
            {"type": "nope"},
            b"\x00\x01",
            {"type": "session.update", "voice": "nobody"},
            {"type": "session.update", "audio_format": "mp3"},
            {"type": "session.update", "model": "piper:other"},
            {"type": "input_text.append", "text": "x" * 6000},
            {"type": "session.update", "extras": {"speed": 9}},
            {"type": "session.update", "voice": "joe", "extras": {"speed": 1.2}},
            {"type": "input_text.append", "text": "Hi."},
            {"type": "input_text.clear"},
            {"type": "response.cancel"},  # nothing in flight: a no-op
            {"type": "server.status"},
        ],
        12,
    )
    codes = [e["error"]["code"] for e in events[1:9]]
    assert codes == [
        "buffer_empty",
        "unsupported_event",
        "invalid_event",
        "invalid_config",
        "unsupported_format",
        "invalid_config",
        "payload_too_large",
        "invalid_config",
    ]
    assert events[1]["previous_event_id"] == "e1"
    assert events[9]["type"] == "session.created"
    assert events[9]["session"]["extras"] == {"speed": 1.2}
    assert events[10]["type"] == "input_text.cleared"
    assert events[11]["type"] == "server.status"
    assert events[11]["buffered_chars"] == 0


def test_stt_protocol_errors(pulled: VoxServer) -> None:
    events = _events(
        uri(pulled, "stt", STT),
        [
            {"type": "input_audio_buffer.commit"},
            b"\x00\x01\x02",
            {"type": "input_audio_buffer.append", "audio": "***"},
            {"type": "session.update", "session": {"turn_detection": {"type": "server_vad"}}},
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 640).decode()},
            {"type": "input_audio_buffer.clear"},
            {"type": "server.status"},
        ],
        9,
    )
    assert [e["type"] for e in events[:3]] == [
        "server.hello",
        "session.created",
        "transcription_session.created",
    ]
    codes = [e["error"]["code"] for e in events[3:7]]
    assert codes == ["buffer_empty", "invalid_event", "invalid_event", "invalid_config"]
    assert events[7]["type"] == "input_audio_buffer.cleared"
    assert events[8]["uncommitted_bytes"] == 0


def test_unknown_model_is_an_error_before_hello(pulled: VoxServer) -> None:
    with connect(uri(pulled, "tts", "piper:nope"), open_timeout=30) as ws:
        event = json.loads(ws.recv(timeout=30))
        assert event["type"] == "error"
        assert event["error"]["code"] == "model_not_found"
    with connect(uri(pulled, "tts", STT), open_timeout=30) as ws:
        event = json.loads(ws.recv(timeout=30))
        assert event["error"]["code"] == "invalid_config"  # an STT model on the TTS route


def test_kokoro_when_available(pulled: VoxServer, tmp_path: Path) -> None:
    """Lights up once the kokoro adapter lands: kokoro:v1.0-int8 through the same client."""
    import httpx

    with pulled.client() as client:
        response = client.post("/api/pull", json={"model": "kokoro:v1.0-int8"})
        lines = [json.loads(x) for x in response.text.splitlines() if x.strip()]
    if response.status_code != 200 or not lines or lines[-1].get("status") != "success":
        pytest.skip(f"kokoro:v1.0-int8 cannot be pulled here: {response.text[-300:]}")
    result = drive("tts", "--uri", uri(pulled, "tts", "kokoro:v1.0-int8"), "--text", SCRIPT[0])
    if "exception" in result or result["hello"].get("type") != "server.hello":
        pytest.skip(f"kokoro:v1.0-int8 does not load here: {result}")
    rate = result["hello"]["audio"]["rate"]
    assert rate == 24000
    check_response(result["responses"][0], rate)
    cancel = drive(
        "cancel", "--uri", uri(pulled, "tts", "kokoro:v1.0-int8"), "--text", " ".join(SCRIPT[:8])
    )
    assert [e["type"] for e in cancel["after"]] == ["server.status"]
    _ = httpx

"""End to end: the TTS WebSocket stream (early audio, cancel, opus) and `vox stream-synthesize`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import pytest
import soundfile as sf

from tests.conftest import VoxServer
from tests.streaming.helpers import SCRIPT, Session, drain, open_ws

pytestmark = pytest.mark.e2e

TTS = "piper:en-us-joe-medium"
CONFIG = {"type": "config", "model": TTS}


def test_first_audio_comes_before_the_last_sentence_and_before_end(pulled: VoxServer) -> None:
    text = " ".join(SCRIPT[:8])
    with open_ws(pulled.url, "/v1/audio/speech/stream") as ws:
        ws.send(json.dumps(CONFIG))
        assert json.loads(ws.recv()) == {"type": "ready", "model": TTS, "response_format": "pcm16"}
        ws.send(json.dumps({"type": "text", "text": text}))
        # No `end` yet: the complete sentences are spoken already.
        start = json.loads(ws.recv(timeout=30))
        assert start["type"] == "audio_start"
        assert start["sample_rate"] == 22050
        first = ws.recv(timeout=30)
        assert isinstance(first, bytes)
        assert len(first) > 1000
        ws.send(json.dumps({"type": "end"}))
        session = drain(ws)
    assert session.close_code == 1000
    progress = session.of("progress")
    assert progress[-1]["chunks_completed"] == progress[-1]["chunks_total"] == 8
    # The first frame was read before `end` was even sent, and each later sentence's audio
    # came between the progress events: audio flows sentence by sentence.
    assert session.order[:4] == ["progress", "binary", "progress", "binary"]
    (done,) = session.of("done")
    audio = len(first) + sum(len(f) for f in session.frames)
    assert done["audio_duration_ms"] == pytest.approx(audio / 2 / 22.05, abs=2)
    assert done["completed_chars"] == done["total_chars"] == len(text)


def test_cancel_stops_audio_at_once(pulled: VoxServer) -> None:
    text = " ".join(SCRIPT)  # about three minutes of speech
    with open_ws(pulled.url, "/v1/audio/speech/stream") as ws:
        ws.send(json.dumps(CONFIG))
        ws.send(json.dumps({"type": "text", "text": text}))
        ws.send(json.dumps({"type": "end"}))
        session = Session()
        while "binary" not in session.order:
            message = ws.recv(timeout=30)
            session.order.append("binary" if isinstance(message, bytes) else "event")
        started = time.perf_counter()
        ws.send(json.dumps({"type": "cancel"}))
        session = drain(ws, session)
    elapsed = time.perf_counter() - started
    assert session.close_code == 1000
    (cancelled,) = session.of("cancelled")
    after = session.order[session.order.index("cancelled") :]
    assert "binary" not in after, after  # no audio frame after the acknowledgement
    assert after[-1] == "done"
    assert cancelled["dropped_chars"] > len(text) // 2
    assert session.of("done")[0]["audio_duration_ms"] < 60_000
    assert elapsed < 10


def test_session_continues_after_cancel(pulled: VoxServer) -> None:
    with open_ws(pulled.url, "/v1/audio/speech/stream") as ws:
        ws.send(json.dumps(CONFIG))
        ws.send(json.dumps({"type": "text", "text": " ".join(SCRIPT[:10])}))
        ws.send(json.dumps({"type": "cancel"}))
        ws.send(json.dumps({"type": "text", "text": "A new answer after the barge in."}))
        ws.send(json.dumps({"type": "end"}))
        session = drain(ws)
    assert session.close_code == 1000
    assert session.of("cancelled")
    tail = session.order[session.order.index("cancelled") :]
    assert "binary" in tail  # the new text was spoken
    assert session.of("progress")[-1]["chunks_total"] >= 1


def test_opus_frames_concatenate_to_one_ogg_opus_stream(pulled: VoxServer) -> None:
    text = " ".join(SCRIPT[:3])
    with open_ws(pulled.url, "/v1/audio/speech/stream") as ws:
        ws.send(json.dumps({**CONFIG, "response_format": "opus"}))
        ws.send(json.dumps({"type": "text", "text": text}))
        ws.send(json.dumps({"type": "end"}))
        session = drain(ws)
    assert session.close_code == 1000
    (start,) = session.of("audio_start")
    assert start["sample_rate"] == 48000
    assert all(frame.startswith(b"OggS") for frame in session.frames)
    with av.open(io.BytesIO(b"".join(session.frames))) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    duration = session.of("done")[0]["audio_duration_ms"] / 1000
    assert samples / 48000 == pytest.approx(duration, abs=0.05)


def test_stream_synthesize_wav_matches_unary_duration(pulled: VoxServer, tmp_path: Path) -> None:
    text = " ".join(SCRIPT[:12])
    script = tmp_path / "script.txt"
    script.write_text(text)
    out = tmp_path / "script.wav"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "vox_cli.main",
            "stream-synthesize",
            TTS,
            str(script),
            "-o",
            str(out),
            "--host",
            pulled.url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    with pulled.client() as client:
        unary = client.post("/api/synthesize", json={"model": TTS, "input": text})
    assert unary.status_code == 200
    reference, rate = sf.read(io.BytesIO(unary.content), dtype="int16")
    assert info.duration == pytest.approx(len(reference) / rate, rel=0.05)


def test_disconnect_mid_synthesis_frees_the_runner(pulled: VoxServer) -> None:
    with open_ws(pulled.url, "/v1/audio/speech/stream") as ws:
        ws.send(json.dumps(CONFIG))
        ws.send(json.dumps({"type": "text", "text": " ".join(SCRIPT)}))
        ws.send(json.dumps({"type": "end"}))
        while not isinstance(ws.recv(timeout=30), bytes):
            pass
    with httpx.Client(base_url=pulled.url, timeout=60) as client:
        deadline = time.monotonic() + 20
        busy = 1
        while busy and time.monotonic() < deadline:
            models = client.get("/api/ps").json()["models"]
            busy = sum(m["in_flight"] for m in models if m["name"] == TTS)
            time.sleep(0.1)
        assert busy == 0
        started = time.perf_counter()
        assert (
            client.post("/api/synthesize", json={"model": TTS, "input": "Free."}).status_code == 200
        )
        assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audio/speech/stream",
        "/v1/audio/transcriptions/stream",
        "/v1/realtime/tts?model=piper:en-us-joe-medium",
    ],
)
def test_audio_sockets_decline_per_message_deflate(pulled: VoxServer, path: str) -> None:
    # The client offers it (websockets does by default); zlib on pcm16 cost ~20 ms per sentence
    # before the first audio frame left, for almost no saving.
    with open_ws(pulled.url, path) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert "Sec-WebSocket-Extensions" not in ws.response.headers

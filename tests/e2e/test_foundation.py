"""End to end: client -> control plane -> sandboxed runner -> real model -> client."""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import VoxServer, wer

pytestmark = pytest.mark.e2e

SENTENCE = (
    "The quick brown fox jumps over the lazy dog. "
    "This server turns text into speech and speech back into text on your own machine."
)


def _speech(client: httpx.Client, text: str = SENTENCE, **extra: object) -> httpx.Response:
    body = {"model": "piper:en-us-joe-medium", "input": text, "voice": "alloy", **extra}
    return client.post("/v1/audio/speech", json=body)


def test_list_shows_both_defaults(pulled: VoxServer) -> None:
    with pulled.client() as client:
        names = {m["name"] for m in client.get("/api/list").json()["models"]}
    assert {"whisper:tiny.en", "piper:en-us-joe-medium"} <= names


def test_speech_then_transcription_round_trip(pulled: VoxServer) -> None:
    with pulled.client() as client:
        response = _speech(client, response_format="wav")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("audio/wav")
        audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
        assert rate == 22050
        duration = len(audio) / rate
        assert 3.0 < duration < 15.0, duration  # ~20 words of speech
        assert np.abs(audio).max() > 1000  # not silence

        files = {"file": ("speech.wav", response.content, "audio/wav")}
        result = client.post(
            "/v1/audio/transcriptions", files=files, data={"model": "whisper:tiny.en"}
        )
        assert result.status_code == 200, result.text
        text = result.json()["text"]
        assert wer(SENTENCE, text) <= 0.10, text

        plain = client.post(
            "/v1/audio/transcriptions",
            files=files,
            data={"model": "whisper-1", "response_format": "text"},
        )
        assert plain.status_code == 200
        assert plain.headers["content-type"].startswith("text/plain")
        assert wer(SENTENCE, plain.text) <= 0.10


def test_native_routes_round_trip(pulled: VoxServer) -> None:
    with pulled.client() as client:
        wav = client.post(
            "/api/synthesize", json={"model": "piper:en-us-joe-medium", "input": SENTENCE}
        )
        assert wav.status_code == 200, wav.text
        result = client.post(
            "/api/transcribe",
            files={"file": ("a.wav", wav.content)},
            data={"model": "whisper:tiny.en", "word_timestamps": "true"},
        )
        assert result.status_code == 200, result.text
        body = result.json()
        assert wer(SENTENCE, body["text"]) <= 0.10
        words = [w for s in body["segments"] for w in s["words"]]
        assert len(words) >= 15
        assert all(w["end"] >= w["start"] for w in words)


def test_pcm_is_openai_24k(pulled: VoxServer) -> None:
    with pulled.client() as client:
        wav = _speech(client, "Hello there.", response_format="wav")
        pcm = _speech(client, "Hello there.", response_format="pcm")
    assert pcm.status_code == 200
    assert pcm.headers["x-sample-rate"] == "24000"
    wav_seconds = (len(wav.content) - 44) / 2 / 22050
    pcm_seconds = len(pcm.content) / 2 / 24000
    # Piper's duration predictor is stochastic: two syntheses differ by a few percent.
    assert abs(wav_seconds - pcm_seconds) < 0.15 * wav_seconds


def test_runners_live_in_their_sandboxes(pulled: VoxServer) -> None:
    with pulled.client() as client:
        _speech(client, "Warm up.")
        models = {m["name"]: m for m in client.get("/api/ps").json()["models"]}
    assert {"whisper:tiny.en", "piper:en-us-joe-medium"} <= set(models)
    for name, adapter in (
        ("whisper:tiny.en", "faster-whisper"),
        ("piper:en-us-joe-medium", "piper"),
    ):
        pid = models[name]["pid"]
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        sandbox = (pulled.home / "sandboxes" / adapter).resolve()
        assert Path(argv0).resolve().is_relative_to(sandbox) or argv0.startswith(str(sandbox)), (
            argv0
        )


def test_control_plane_never_imports_inference_stacks() -> None:
    # The test process runs in the control plane's environment.
    assert importlib.util.find_spec("faster_whisper") is None
    assert importlib.util.find_spec("piper") is None
    assert importlib.util.find_spec("ctranslate2") is None


def test_unknown_model_is_404_naming_it(pulled: VoxServer) -> None:
    with pulled.client() as client:
        r = client.post("/v1/audio/speech", json={"model": "nosuch:model", "input": "hi"})
        assert r.status_code == 404
        assert "nosuch:model" in r.json()["error"]["message"]
        r = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", b"RIFF")},
            data={"model": "whisper:nope"},
        )
        assert r.status_code == 404
        assert "whisper:nope" in r.json()["error"]["message"]


def test_bad_inputs_are_400(pulled: VoxServer) -> None:
    with pulled.client() as client:
        r = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("notes.txt", b"this is not audio at all " * 50, "text/plain")},
            data={"model": "whisper:tiny.en"},
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "file"
        r = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("empty.wav", b"")},
            data={"model": "whisper:tiny.en"},
        )
        assert r.status_code == 400
        for text in ("", "   "):
            r = _speech(client, text)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "input"
        r = client.post(
            "/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        r = _speech(client, "hi", speed=9)
        assert r.status_code == 400
        r = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", b"RIFF")},
            data={"model": "piper:en-us-joe-medium"},
        )
        assert r.status_code == 400
        assert "text-to-speech" in r.json()["error"]["message"]


def test_runner_killed_mid_request_is_5xx_then_recovers(pulled: VoxServer) -> None:
    with pulled.client() as client:
        long_text = " ".join([SENTENCE] * 4)  # ~30 s of audio: seconds of work to interrupt
        wav = _speech(client, long_text, response_format="wav").content
        _ = client.post("/v1/audio/transcriptions", files={"file": ("w.wav", wav)})  # warm
        pid = next(
            m["pid"]
            for m in client.get("/api/ps").json()["models"]
            if m["name"] == "whisper:tiny.en"
        )
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            with pulled.client() as c:
                result["r"] = c.post("/v1/audio/transcriptions", files={"file": ("w.wav", wav)})

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ps = client.get("/api/ps").json()["models"]
            if any(m["name"] == "whisper:tiny.en" and m["in_flight"] for m in ps):
                break
            time.sleep(0.02)
        time.sleep(0.3)  # let inference start inside the runner
        os.kill(pid, signal.SIGKILL)
        thread.join(60)
        response = result["r"]
        assert 500 <= response.status_code < 600, response.text
        assert "runner" in response.json()["error"]["message"]
        # The server log carries the runner's last stderr lines.
        assert f"vox-runner[{pid}]" in pulled.log()

        again = client.post("/v1/audio/transcriptions", files={"file": ("w.wav", wav)})
        assert again.status_code == 200, again.text
        assert wer(long_text, again.json()["text"]) <= 0.15
        new_pid = next(
            m["pid"]
            for m in client.get("/api/ps").json()["models"]
            if m["name"] == "whisper:tiny.en"
        )
        assert new_pid != pid


def test_no_runner_survives_server_stop(tmp_path: Path, pulled: VoxServer) -> None:
    # A second server on the same home (models and sandboxes already there).
    server = VoxServer(pulled.home, tmp_path / "second.log")
    server.start()
    with server.client() as client:
        assert _speech(client, "One more sentence.").status_code == 200
        wav = _speech(client, "And another one.").content
        assert (
            client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)}).status_code
            == 200
        )
        pids = [m["pid"] for m in client.get("/api/ps").json()["models"]]
    assert len(pids) == 2
    # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean stop.
    assert server.stop() in (0, -15)
    assert "Application shutdown complete" in server.log()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"runner {pid} survived"

"""vox-runtime 0.2.93's routes and model names, through a real server: its users switch
without edits (shapes read from its published sdist: vox/server/routes, vox/operations)."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import pytest

from tests.conftest import VoxServer, wer

pytestmark = pytest.mark.e2e

SENTENCE = "Please call Stella and ask her to bring these things with her from the store."


def test_health_models_voices_and_loaded(pulled: VoxServer) -> None:
    with pulled.client() as client:
        assert client.get("/v1/health").json()["status"] == "ok"
        body = client.get("/v1/models").json()
        assert body["object"] == "list"  # the OpenAI SDK's shape stays whole
        runtime = {(m["name"], m["tag"]): m for m in body["models"]}
        assert runtime[("piper", "en-us-joe-medium")]["type"] == "tts"
        assert runtime[("whisper", "tiny.en")]["size_bytes"] > 10_000_000
        voices = client.get("/v1/audio/voices", params={"model": "piper-tts:en-us-joe-medium"})
        assert voices.status_code == 200, voices.text
        assert {"id", "name", "language", "gender", "is_cloned"} <= set(voices.json()["voices"][0])
        every = client.get("/v1/audio/voices").json()["voices"]
        assert {v["model"] for v in every} >= {"piper:en-us-joe-medium"}


def test_speech_and_transcription_by_vox_runtime_names(pulled: VoxServer) -> None:
    with pulled.client() as client:
        speech = client.post(
            "/v1/audio/speech",
            json={
                "model": "piper-tts:en-us-joe-medium",
                "input": SENTENCE,
                "response_format": "wav",
            },
        )
        assert speech.status_code == 200, speech.text
        text = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("s.wav", speech.content, "audio/wav")},
            data={"model": "whisper-stt:tiny.en"},
        )
        assert text.status_code == 200, text.text
        assert wer(SENTENCE, text.json()["text"]) <= 0.25
        loaded = client.get("/v1/models/loaded").json()["models"]
        piper = next(m for m in loaded if m["name"] == "piper")
        assert piper["tag"] == "en-us-joe-medium"
        assert {"device", "vram_bytes", "loaded_at", "last_used", "ref_count"} <= set(piper)
        with wave.open(io.BytesIO(speech.content)) as w:
            assert w.getframerate() > 0


def test_pull_and_delete_by_vox_runtime_routes(tmp_path: Path) -> None:
    server = VoxServer(tmp_path / "home", tmp_path / "server.log", {"VOX_PULL_DEFAULTS": "false"})
    server.start()
    try:
        with server.client() as client:
            with client.stream(
                "POST", "/v1/models/pull", json={"name": "piper-tts:en-us-joe-medium"}
            ) as response:
                assert response.status_code == 200
                events = [json.loads(line) for line in response.iter_lines() if line.strip()]
            assert events[-1]["status"] == "success", events[-3:]
            # Once, last: an Ollama-style client stops reading at the first success.
            assert [e["status"] for e in events].count("success") == 1, events
            names = [m["name"] for m in client.get("/api/list").json()["models"]]
            assert names == ["piper:en-us-joe-medium"]
            gone = client.delete("/v1/models/piper-tts:en-us-joe-medium")
            assert gone.status_code == 200, gone.text
            assert gone.json()["status"] == "success"
            assert client.get("/api/list").json()["models"] == []
            missing = client.delete("/v1/models/piper-tts:en-us-joe-medium")
            assert missing.status_code == 404
    finally:
        server.stop()

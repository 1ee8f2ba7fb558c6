"""End to end: a default start loads the installed default models without any request, only
what fits beside the loaded ones (nothing evicted), and `--preload none` loads nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer
from tests.e2e.sched_util import STT, TTS, ps, transcribe, until

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def started(pulled: VoxServer, log: Path, preload: str | None, **env: str) -> Iterator[VoxServer]:
    server = VoxServer(pulled.home, log, {"VOX_PULL_DEFAULTS": "false", **env}, preload=preload)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_default_start_loads_both_default_models(tmp_path: Path, pulled: VoxServer) -> None:
    with started(pulled, tmp_path / "default.log", None) as server:
        with server.client(timeout=30) as client:

            def both_idle() -> bool:
                models = ps(client)
                return all(models.get(n, {}).get("state") == "idle" for n in (STT, TTS))

            until(both_idle, "both defaults loaded in /api/ps")
            # Loaded for nobody yet, and on the server's keep-alive like any model.
            models = ps(client)
            assert all(models[n]["expires_at"] for n in (STT, TTS)), models
            # Each load was done ahead, by the preload, and counts as it took: not 0.0 s.
            assert all(models[n]["load_seconds"] >= 0.05 for n in (STT, TTS)), models
            assert client.get("/api/ready").status_code == 200
        assert "POST" not in server.log()  # no request asked for them
    # piper's load kept the graph onnxruntime optimized: later loads read it back.
    notes = (pulled.home / "cache" / "onnx").glob("*.json")
    sources = [Path(json.loads(note.read_text())["model"]) for note in notes]
    assert any(path.parts[-3] == "piper" and path.is_file() for path in sources), sources
    assert list((pulled.home / "cache" / "onnx").glob("*.onnx"))


def test_default_preload_evicts_nothing(tmp_path: Path, pulled: VoxServer) -> None:
    with started(pulled, tmp_path / "one.log", None, VOX_MAX_LOADED="1") as server:
        # Speech first (settings.preload_defaults): with room for one, whisper is left out.
        until(lambda: f"not preloading {STT}" in server.log(), "the second default skipped")
        with server.client(timeout=30) as client:
            assert list(ps(client)) == [TTS]


def test_preload_none_loads_nothing(tmp_path: Path, pulled: VoxServer, wav: bytes) -> None:
    with started(pulled, tmp_path / "none.log", "none") as server:
        with server.client(timeout=120) as client:
            assert ps(client) == {}
            assert transcribe(client, wav).status_code == 200
            assert list(ps(client)) == [STT]  # what was asked for, nothing beside it
        assert f"runner {TTS}" not in server.log()


@pytest.fixture
def wav(pulled: VoxServer) -> bytes:
    with httpx.Client(base_url=pulled.url, timeout=120) as client:
        body = {"model": TTS, "input": "Nothing else loads.", "response_format": "wav"}
        response = client.post("/api/synthesize", json=body)
    assert response.status_code == 200, response.text
    return response.content

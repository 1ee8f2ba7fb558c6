"""Helpers for the adapter tests: a copy of the example "tone" package and its model dir."""

from __future__ import annotations

import io
import json
import shutil
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import VoxServer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "vox-adapter-tone"
TEXT = "Hello there. Bye!"  # 15 characters spoken as tones, at 60 ms each


def copy_example(root: Path) -> tuple[Path, Path]:
    """The example project and its model dir, copied under ``root`` (an allowed local root)."""
    project = root / "vox-adapter-tone"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    return project, project / "model"


@contextmanager
def tone_server(root: Path, **env: str) -> Iterator[VoxServer]:
    server = VoxServer(
        root / "home",
        root / "server.log",
        env={
            "VOX_PULL_DEFAULTS": "false",
            "VOX_ALLOW_LOCAL_DIR": str(root),
            "VOX_ALLOW_ADAPTER_PACKAGES": "true",
            **env,
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pull(server: VoxServer, name: str) -> list[dict[str, Any]]:
    with (
        server.client() as client,
        client.stream("POST", "/api/pull", json={"model": name}) as response,
    ):
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def speak(server: VoxServer, name: str, voice: str | None = None) -> np.ndarray[Any, Any]:
    """Synthesize TEXT as WAV and check it is the tone model's audio: 16 kHz, 60 ms a char."""
    body: dict[str, Any] = {"model": name, "input": TEXT, "response_format": "wav"}
    if voice is not None:
        body["voice"] = voice
    with server.client() as client:
        response = client.post("/v1/audio/speech", json=body)
    assert response.status_code == 200, response.text
    with wave.open(io.BytesIO(response.content)) as wav:
        assert wav.getframerate() == 16000
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    chars = sum(len(s.strip()) for s in ("Hello there.", "Bye!"))
    assert abs(len(samples) - chars * 960) <= 960, len(samples)
    assert np.abs(samples).max() > 8000  # tones, not silence
    return samples

"""A real server for the OpenAI Realtime tests: both defaults and the VAD model pulled.

Its log is at debug level, so the runners' own lines (a cancelled request) can be checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import VoxServer

MODELS = ("whisper:tiny.en", "piper:en-us-joe-medium", "silero-vad:v6")


@pytest.fixture(scope="session")
def rt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("vox-rt")
    server = VoxServer(root / "home", root / "server.log", env={"VOX_LOG_LEVEL": "debug"})
    server.start()
    with server.client() as client:
        for name in MODELS:
            with client.stream("POST", "/api/pull", json={"model": name}) as response:
                assert response.status_code == 200, response.read()
                events = [json.loads(line) for line in response.iter_lines() if line.strip()]
            assert events[-1]["status"] == "success", events[-5:]
    yield server
    server.stop()

"""A real server with both default models pulled, shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import VoxServer


@pytest.fixture(scope="session")
def vox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("vox")
    server = VoxServer(root / "home", root / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pulled(vox_server: VoxServer) -> VoxServer:
    """Both defaults pulled through /api/pull (joining the pull the server began on start)."""
    import json

    with vox_server.client() as client:
        for name in ("whisper:tiny.en", "piper:en-us-joe-medium"):
            with client.stream("POST", "/api/pull", json={"model": name}) as response:
                assert response.status_code == 200, response.read()
                events = [json.loads(line) for line in response.iter_lines() if line.strip()]
            assert events[-1]["status"] == "success", events[-5:]
    return vox_server

"""End to end: readiness waits for --preload runners to answer, and drops while one is frozen.

/api/health (liveness) answers 200 throughout; /api/ready answers 503 with its reason while
the preloaded models load, 200 once each runner answered a round trip, 503 again while a
runner is stopped (SIGSTOP: it answers nothing, as a deadlocked runner would), and 200 once
it runs again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer
from tests.e2e.sched_util import STT, TTS, own_server, ps

pytestmark = pytest.mark.e2e


def wait_ready(client: httpx.Client, want: int, timeout: float = 120.0) -> list[httpx.Response]:
    """Probe /api/ready until it answers ``want``; every answer seen, in order."""
    seen: list[httpx.Response] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(client.get("/api/ready"))
        if seen[-1].status_code == want:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"/api/ready never answered {want}: {seen[-1].text}")


def test_readiness_follows_the_preloaded_runners(tmp_path: Path, pulled: VoxServer) -> None:
    # Two preloads: loads go one at a time, so the server answers health long before both
    # runners have answered.
    preloading = own_server(pulled, tmp_path / "ready.log", preload=f"{STT},{TTS}")
    with preloading as server, server.client(timeout=30) as client:
        seen = wait_ready(client, 200)
        assert seen[0].status_code == 503, seen[0].text
        for response in seen[:-1]:
            assert response.status_code == 503
            assert response.json()["status"] == "not ready"
            assert "loading" in response.json()["reason"]
        assert seen[-1].json() == {"status": "ready"}
        assert set(ps(client)) == {STT, TTS}

        pid = ps(client)[TTS]["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            stuck = client.get("/api/ready")
            assert stuck.status_code == 503
            assert stuck.json()["reason"] == f"the runner for {TTS} did not answer within 2s"
            assert client.get("/api/health").status_code == 200  # liveness stays true
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_ready(client, 200, timeout=30)
        assert ps(client)[TTS]["pid"] == pid  # the same runner, answering again

"""The server as an operator sees it: JSON logs that parse, probes kept out of the access log,
lifecycle lines under vox's own name, and a busy port said plainly before anything else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VoxServer

pytestmark = pytest.mark.e2e


def test_json_logs_parse_and_skip_health_polls(tmp_path: Path) -> None:
    env = {"VOX_PULL_DEFAULTS": "false", "VOX_LOG_FORMAT": "json"}
    server = VoxServer(tmp_path / "home", tmp_path / "server.log", env)
    server.start()
    try:
        with server.client() as client:
            for _ in range(5):
                assert client.get("/api/health").status_code == 200
            assert client.get("/api/list").status_code == 200
            assert client.post("/api/show", json={"model": "nope:nope"}).status_code == 404
        # A second server on the same port: one clear line, never "serving on".
        busy = subprocess.run(
            [sys.executable, "-m", "vox_cli.main", "serve", "--port", str(server.port)],
            env={**os.environ, "VOX_HOME": str(tmp_path / "other"), "VOX_PULL_DEFAULTS": "false"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert busy.returncode != 0
    assert "already in use" in busy.stderr
    assert "vox status" in busy.stderr
    assert "serving on" not in busy.stderr
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any("/api/list" in m for m in access)
    assert not any("/api/health" in m for m in access)
    assert not any(r["logger"] == "uvicorn.error" for r in records)
    assert any(r["logger"] == "vox.server" for r in records)

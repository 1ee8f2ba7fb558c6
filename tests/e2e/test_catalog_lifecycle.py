"""User catalog entries live and die with their models: a failed `vox pull hf://... --as`
leaves no entry, `vox rm` removes an entry whose pull never finished, and registering another
source under a taken name needs --force."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VoxServer

pytestmark = pytest.mark.e2e


def vox(server: VoxServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vox_cli.main", *args],
        env={**os.environ, "VOX_HOST": server.url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_entries_follow_their_models(tmp_path: Path) -> None:
    # Offline: a pull that would download fails at once, which is all a failed pull needs.
    env = {"VOX_PULL_DEFAULTS": "false", "VOX_OFFLINE": "1"}
    server = VoxServer(tmp_path / "home", tmp_path / "server.log", env)
    server.start()
    catalog = tmp_path / "home" / "catalog"
    try:
        failed = vox(
            server, "pull", "hf://someone/voice", "--adapter", "piper", "--as", "piper:mine"
        )
        assert failed.returncode == 1, failed.stdout
        assert "offline" in failed.stderr.lower(), failed.stderr
        with server.client() as client:
            assert client.post("/api/show", json={"model": "piper:mine"}).status_code == 404
            assert not list(catalog.glob("piper__mine*"))

            body = {"name": "piper:two", "source": "hf://a/b", "adapter": "piper"}
            first = client.post("/api/register", json=body)
            assert first.status_code == 200, first.text
            assert first.json()["created"] is True
            again = client.post("/api/register", json=body)
            assert again.json()["created"] is False  # the same source: nothing new
            other = client.post("/api/register", json={**body, "source": "hf://a/c"})
            assert other.status_code == 409, other.text
            assert "force" in other.json()["error"]["message"]
            forced = client.post(
                "/api/register", json={**body, "source": "hf://a/c", "force": True}
            )
            assert forced.status_code == 200, forced.text

        removed = vox(server, "rm", "piper:two")  # registered, never pulled
        assert removed.returncode == 0, removed.stderr
        with server.client() as client:
            assert client.post("/api/show", json={"model": "piper:two"}).status_code == 404
            missing = client.post("/api/show", json={"model": "piper:twoo"}).json()
            suggested = missing["error"]["message"].partition("did you mean")[2]
            assert "piper:two," not in suggested + ","  # no stale "did you mean"
            assert "piper:two?" not in suggested
        assert not list(catalog.glob("piper__two*"))
        assert vox(server, "rm", "piper:two").returncode == 1  # gone: a 404 now
    finally:
        server.stop()

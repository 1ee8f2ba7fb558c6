"""Shared by the store reliability tests: one Vox home with both defaults, pulls, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import VoxServer

JOE = "piper:en-us-joe-medium"
WHISPER = "whisper:tiny.en"
JOE_ONNX = "en_US-joe-medium.onnx"
SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."


def start_server(
    factory: pytest.TempPathFactory, label: str, env: dict[str, str] | None = None
) -> VoxServer:
    """A server on the session's shared store home (the second module reuses its models)."""
    home = factory.getbasetemp() / "store-home"
    log = factory.mktemp(label) / "server.log"
    server = VoxServer(home, log, env={"VOX_PULL_DEFAULTS": "0", **(env or {})})
    server.start()
    with server.client() as client:
        for name in (WHISPER, JOE):
            assert pull(client, name)[-1] == {"status": "success", "model": name}
    return server


def pull(client: httpx.Client, name: str, **extra: Any) -> list[dict[str, Any]]:
    with client.stream("POST", "/api/pull", json={"model": name, **extra}) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def listed(client: httpx.Client) -> set[str]:
    return {m["name"] for m in client.get("/api/list").json()["models"]}


def vox(server: VoxServer, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOX_HOST": server.url}
    return subprocess.run(
        [sys.executable, "-m", "vox_cli.main", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded(server: VoxServer, name: str, file: str) -> str:
    """The digest the store's manifest holds for ``file`` of ``name``."""
    family, tag = name.split(":")
    manifest = json.loads((server.home / "models" / family / tag / "manifest.json").read_text())
    return str(next(f["sha256"] for f in manifest["files"] if f["path"] == file))


def model_dir(server: VoxServer, name: str) -> Path:
    family, tag = name.split(":")
    return server.home / "models" / family / tag

"""Helpers for the scheduler's end-to-end tests: own servers on the shared home, runner pids."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import VoxServer

STT = "whisper:tiny.en"
TTS = "piper:en-us-joe-medium"
SENTENCE = "The scheduler keeps every runner within its memory budget."


@contextlib.contextmanager
def own_server(pulled: VoxServer, log: Path, **env: str) -> Iterator[VoxServer]:
    """A second `vox serve` on the pulled home (models, sandboxes, remembered memory)."""
    server = VoxServer(
        pulled.home,
        log,
        env={"VOX_PULL_DEFAULTS": "false", **{f"VOX_{k.upper()}": v for k, v in env.items()}},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ps(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client.get("/api/ps").json()["models"]}


def speak(client: httpx.Client, text: str = SENTENCE, **extra: Any) -> httpx.Response:
    body = {"model": TTS, "input": text, "response_format": "wav", **extra}
    return client.post("/api/synthesize", json=body)


def transcribe(client: httpx.Client, wav: bytes, **extra: Any) -> httpx.Response:
    return client.post(
        "/api/transcribe", files={"file": ("a.wav", wav)}, data={"model": STT, **extra}
    )


def until(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll ``check`` every 0.1 s until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"

"""The CLI as a user drives it, through a real server: VOX_HOST for serve and CLI, piped
listings, files at rest with true WAV sizes, the format by extension, transcription upload."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer, free_port, wer

pytestmark = pytest.mark.e2e

SENTENCE = "The quick brown fox jumps over the lazy dog."


def vox(server: VoxServer, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vox_cli.main", *args],
        env={**os.environ, "VOX_HOST": server.url, "COLUMNS": "80", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_serve_binds_vox_host_with_its_port(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "VOX_HOME": str(tmp_path / "home"), "VOX_PULL_DEFAULTS": "false"}
    for value in (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "vox_cli.main", "serve"],
            env={**env, "VOX_HOST": value},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            for _ in range(300):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                pytest.fail(f"VOX_HOST={value}: no server on {port}")
        finally:
            proc.terminate()
            proc.wait(30)


def test_piped_list_keeps_names_whole_at_80_columns(pulled: VoxServer) -> None:
    out = vox(pulled, "list")
    names = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert {"whisper:tiny.en", "piper:en-us-joe-medium"} <= names
    search = vox(pulled, "search", "whisper")
    assert "whisper:large-v3-turbo" in {line.split()[0] for line in search.splitlines()}


def test_run_writes_real_files_and_transcribes_them(pulled: VoxServer, tmp_path: Path) -> None:
    wav = tmp_path / "hi.wav"
    vox(pulled, "run", "piper:en-us-joe-medium", SENTENCE, "-o", str(wav))
    with wave.open(str(wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert 1.0 < seconds < 10.0  # a streamed header would claim 97,000 s
    assert wav.stat().st_size == 44 + w.getnframes() * 2
    mp3 = tmp_path / "hi.mp3"
    vox(pulled, "run", "piper:en-us-joe-medium", SENTENCE, "-o", str(mp3))
    head = mp3.read_bytes()[:3]
    assert head == b"ID3" or head[0] == 0xFF  # an MP3, not WAV bytes under an .mp3 name
    text = vox(pulled, "run", "whisper:tiny.en", str(wav))
    assert wer(SENTENCE, text) <= 0.2

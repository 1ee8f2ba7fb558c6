"""Helpers for the audio reliability tests: WAV headers that lie, and a server's memory."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from tests.conftest import VoxServer


def wav(rate: int, channels: int, body: bytes, size: int | None = None) -> bytes:
    """A PCM16 WAV whose header claims ``rate``, ``channels`` and ``size`` data bytes (any of
    them may be a lie; ``size`` defaults to the truth)."""
    size = len(body) if size is None else size
    block = (channels * 2) & 0xFFFF
    return (
        b"RIFF"
        + struct.pack("<I", (36 + size) & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, rate & 0xFFFFFFFF, (rate * block) & 0xFFFFFFFF, block, 16
        )
        + b"data"
        + struct.pack("<I", size & 0xFFFFFFFF)
        + body
    )


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and VmSize of a process, in kB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize"):
            out[key] = int(value.split()[0])
    return out


def pull(server: VoxServer, *names: str) -> None:
    """Pull models through /api/pull (joining the pull the server began on start)."""
    with server.client() as client:
        for name in names:
            with client.stream("POST", "/api/pull", json={"model": name}) as response:
                assert response.status_code == 200, response.read()
                events = [json.loads(line) for line in response.iter_lines() if line.strip()]
            assert events[-1]["status"] == "success", events[-5:]

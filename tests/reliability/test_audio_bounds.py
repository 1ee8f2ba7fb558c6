"""End to end: hostile audio headers get a quick 4xx and cost the control plane no memory.

Before the fix a 40 KB WAV claiming 1 Hz was resampled 16,000x before any check: the control
plane peaked at 3.9 GB and answered 500 FrameTooLarge after 12 s. Each case here is made by
the test, sent over HTTP (and the 1 Hz one over the streaming WebSocket), and the server's
peak RSS (VmHWM) must stay where it was; a last test repeats the worst case in a control plane
whose address space is capped a few hundred MB above its size (RLIMIT_AS), and checks it
still serves a real transcription afterwards; the last one checks the duration limit (413)
and the global upload budget (503).
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import VoxServer
from tests.reliability.audio_helpers import memory_kb, pull, wav
from tests.streaming.helpers import drain, open_ws

pytestmark = pytest.mark.e2e

MODEL = "whisper:tiny.en"
SECOND = np.zeros(16000, dtype="<i2").tobytes()
HOSTILE = {
    # name: (file, statuses it may get)
    "1 Hz, 40 KB": (wav(1, 1, b"\x01\x00" * 20_000), {400}),
    "0 Hz": (wav(0, 1, b"\x01\x00" * 5_000), {400}),
    "4 GHz": (wav(4_000_000_000, 1, b"\x01\x00" * 5_000), {400}),
    "65535 channels": (wav(16000, 65535, b"\x01\x00" * 20_000), {400}),
    "2 kHz, 10 KB": (wav(2_000, 1, b"\x01\x00" * 5_000), {200}),  # 2.5 s: real, if odd
    "data size claims 4 GB": (wav(16000, 1, SECOND, size=0xFFFFFFF0), {200}),
    "truncated": (wav(16000, 1, SECOND * 10)[:3000], {200}),  # keeps what decoded
    "header only": (wav(16000, 1, b""), {400}),
}
# Peak RSS the whole hostile run may add to the control plane (it peaked 3.9 GB before).
RSS_BOUND_KB = 150 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("bounds")
    vox = VoxServer(root / "home", root / "server.log", env={"VOX_DEFAULT_TTS": MODEL})
    vox.start()
    pull(vox, MODEL)
    with vox.client() as client:  # load the runner, so its start is not counted below
        warm = client.post(
            "/v1/audio/transcriptions",
            data={"model": MODEL},
            files={"file": ("a.wav", wav(16000, 1, SECOND), "audio/wav")},
        )
        assert warm.status_code == 200, warm.text
    yield vox
    vox.stop()


def _post(vox: VoxServer, data: bytes) -> tuple[int, Any, float]:
    started = time.monotonic()
    with vox.client(timeout=120) as client:
        response = client.post(
            "/v1/audio/transcriptions",
            data={"model": MODEL},
            files={"file": ("hostile.wav", data, "audio/wav")},
        )
    return response.status_code, response.json(), time.monotonic() - started


def test_hostile_headers_get_a_quick_answer_and_no_memory(server: VoxServer) -> None:
    assert server.proc is not None
    before = memory_kb(server.proc.pid)
    for name, (data, statuses) in HOSTILE.items():
        status, body, elapsed = _post(server, data)
        assert status in statuses, (name, status, body)
        assert elapsed < 10, (name, elapsed)  # a header check: milliseconds, generously
        if status == 400:
            assert body["error"]["param"] == "file", (name, body)
    after = memory_kb(server.proc.pid)
    assert after["VmHWM"] - before["VmHWM"] < RSS_BOUND_KB, (before, after)


def test_rate_outside_the_limits_names_the_limit(server: VoxServer) -> None:
    status, body, _ = _post(server, HOSTILE["1 Hz, 40 KB"][0])
    assert status == 400
    message = body["error"]["message"]
    assert "1 Hz is outside 1000..384000 Hz" in message, message


def test_hostile_frame_on_the_streaming_socket(server: VoxServer) -> None:
    assert server.proc is not None
    before = memory_kb(server.proc.pid)
    with open_ws(server.url, "/v1/audio/transcriptions/stream") as ws:
        ws.send(json.dumps({"type": "config", "model": MODEL, "input_format": "wav"}))
        ws.send(HOSTILE["1 Hz, 40 KB"][0])
        session = drain(ws)
    errors = session.of("error")
    assert [e["code"] for e in errors] == ["invalid_audio"], session.events
    assert "1000..384000" in errors[0]["message"]
    # A declared pcm16 rate outside the accepted range is refused at config time.
    with open_ws(server.url, "/v1/audio/transcriptions/stream") as ws:
        ws.send(json.dumps({"type": "config", "model": MODEL, "sample_rate": 1}))
        refused = drain(ws)
    assert [e["code"] for e in refused.of("error")] == ["invalid_config"], refused.events
    after = memory_kb(server.proc.pid)
    assert after["VmHWM"] - before["VmHWM"] < RSS_BOUND_KB, (before, after)


def test_a_memory_limited_control_plane_survives(server: VoxServer) -> None:
    """RLIMIT_AS on the running control plane: its address space now plus 512 MB. The old
    decoder needed 3.9 GB for this file; an allocation past the cap would fail in it."""
    assert server.proc is not None
    pid = server.proc.pid
    size = memory_kb(pid)["VmSize"] * 1024
    limit = size + 512 * 1024 * 1024
    old = resource.prlimit(pid, resource.RLIMIT_AS)
    # Only the soft limit: an unprivileged process may not raise a hard limit back.
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, old[1]))
    try:
        for _ in range(3):
            status, body, _ = _post(server, HOSTILE["1 Hz, 40 KB"][0])
            assert status == 400, body
        status, body, _ = _post(server, wav(16000, 1, SECOND * 2))
        assert status == 200, body
        assert server.proc.poll() is None
    finally:
        resource.prlimit(pid, resource.RLIMIT_AS, old)


def test_duration_and_upload_budget_limits(tmp_path: Path) -> None:
    """A file longer than VOX_MAX_AUDIO_SECONDS: 413 from the header, with the limit named;
    a body past VOX_MAX_UPLOAD_BYTES_TOTAL: 503 with Retry-After before it is read."""
    vox = VoxServer(
        tmp_path / "home",
        tmp_path / "server.log",
        env={
            "VOX_MAX_AUDIO_SECONDS": "5",
            "VOX_MAX_UPLOAD_BYTES_TOTAL": "1000000",
            "VOX_PULL_DEFAULTS": "false",
        },
    )
    vox.start()
    try:
        pull(vox, MODEL)
        status, body, _ = _post(vox, wav(16000, 1, SECOND * 8))
        with vox.client() as client:
            busy = client.post(
                "/v1/audio/transcriptions",
                data={"model": MODEL},
                files={"file": ("big.wav", wav(16000, 1, SECOND * 40), "audio/wav")},
            )
            health = client.get("/api/health")
    finally:
        vox.stop()
    assert status == 413, body
    message = body["error"]["message"]
    assert "limit of 5 s; it says 8 s (VOX_MAX_AUDIO_SECONDS)" in message, message
    assert busy.status_code == 503, busy.text
    assert busy.headers["Retry-After"]
    assert "VOX_MAX_UPLOAD_BYTES_TOTAL" in busy.json()["error"]["message"]
    assert health.status_code == 200

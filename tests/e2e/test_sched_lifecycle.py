"""End to end: crash mid-request (502 fast, recovery), keep_alive, load/unload, SIGTERM drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer, wer
from tests.e2e.sched_util import (
    SENTENCE,
    STT,
    TTS,
    alive,
    own_server,
    ps,
    speak,
    transcribe,
    until,
)

pytestmark = pytest.mark.e2e


def test_kill_9_mid_request_is_502_within_a_second_then_recovers(
    tmp_path: Path, pulled: VoxServer
) -> None:
    with own_server(pulled, tmp_path / "crash.log") as server, server.client() as client:
        long_text = " ".join([SENTENCE] * 6)
        wav = speak(client, long_text).content
        assert transcribe(client, wav).status_code == 200
        pid = ps(client)[STT]["pid"]
        result: dict[str, object] = {}

        def call() -> None:
            with server.client() as c:
                result["response"] = transcribe(c, wav)
                result["at"] = time.monotonic()

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 30
        while not ps(client).get(STT, {}).get("in_flight") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # inference under way in the runner
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        thread.join(30)
        response = result["response"]
        assert isinstance(response, httpx.Response)
        assert response.status_code == 502, response.text
        assert response.json()["error"]["code"] == "runner_died"
        assert float(result["at"]) - killed_at < 1.0  # type: ignore[arg-type]
        assert STT not in ps(client)  # noticed and dropped, before any new request
        assert not alive(pid)
        again = transcribe(client, wav)
        assert again.status_code == 200, again.text
        assert ps(client)[STT]["pid"] != pid
        assert "killed" in server.log() or "code -9" in server.log()


def test_keep_alive_per_request_load_unload_and_stop(tmp_path: Path, pulled: VoxServer) -> None:
    with (
        own_server(pulled, tmp_path / "keep.log", keep_alive="10m") as server,
        server.client() as client,
    ):
        # keep_alive 0: unloaded as soon as the request is done.
        assert speak(client, keep_alive=0).status_code == 200
        deadline = time.monotonic() + 10
        while TTS in ps(client) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert TTS not in ps(client)
        assert speak(client, keep_alive="-1").status_code == 200
        entry = ps(client)[TTS]
        assert entry["expires_at"] is None
        assert entry["keep_alive_s"] is None
        assert speak(client, keep_alive="bogus").status_code == 400
        # /api/load with a keep_alive, /api/unload, and `vox stop`.
        loaded = client.post("/api/load", json={"model": STT, "keep_alive": "2m"})
        assert loaded.status_code == 200, loaded.text
        assert 100 < ps(client)[STT]["expires_in_s"] <= 120
        pid = ps(client)[STT]["pid"]
        assert client.post("/api/unload", json={"model": STT}).json()["status"] == "unloaded"
        assert STT not in ps(client)
        assert not alive(pid)
        stop = subprocess.run(
            [sys.executable, "-m", "vox_cli.main", "stop", TTS, "--host", server.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stop.returncode == 0, stop.stderr
        assert f"stopped {TTS}" in stop.stderr
        assert ps(client) == {}
        missing = client.post("/api/load", json={"model": "whisper:base.en"})
        assert missing.status_code == 404


def test_sigterm_drains_in_flight_requests_and_leaves_no_process(
    tmp_path: Path, pulled: VoxServer
) -> None:
    server = VoxServer(pulled.home, tmp_path / "term.log", env={"VOX_DRAIN_TIMEOUT": "20"})
    server.start()
    with server.client() as client:
        assert speak(client, "Warm up.").status_code == 200
        wav = speak(client, " ".join([SENTENCE] * 2)).content
        assert transcribe(client, wav).status_code == 200
        pids = [m["pid"] for m in ps(client).values()]
    results: list[object] = []

    def call(i: int) -> None:
        try:
            with server.client(timeout=60) as c:
                r = speak(c, " ".join([SENTENCE] * 3)) if i % 2 else transcribe(c, wav)
                results.append(r.status_code)
        except httpx.HTTPError as exc:  # a clean failure: the connection closed
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    assert server.stop(timeout=60) in (0, -15)
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert len(results) == 4
    assert results.count(200) >= 2, results  # in flight when SIGTERM came: drained
    for pid in pids:
        assert not alive(pid), f"runner {pid} survived"
    assert "Application shutdown complete" in server.log()


def test_the_control_plane_hands_its_heap_back_once_idle(tmp_path: Path, pulled: VoxServer) -> None:
    """Once the last request has ended and the server has stayed idle, the control plane trims
    glibc's heap (heap.py), once; the requests after it are served as before."""
    log = tmp_path / "heap.log"
    with own_server(pulled, log, log_level="debug") as server, server.client() as client:
        spoken = speak(client)
        assert spoken.status_code == 200, spoken.text
        for _ in range(2):  # before the trim, then after it
            heard = transcribe(client, spoken.content)
            assert heard.status_code == 200, heard.text
            assert wer(SENTENCE, heard.json()["text"]) <= 0.2, heard.text
            trims = server.log().count("heap trimmed")
            until(
                lambda seen=trims: server.log().count("heap trimmed") > seen,
                "a heap trim after the transcription",
                timeout=30,
            )
        time.sleep(2)  # idle on: nothing more to trim until a request ends
        assert server.log().count("heap trimmed") == trims + 1

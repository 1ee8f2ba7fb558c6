"""End to end: a runner that crashes mid-request reaches the client as a clean error with its
request id; the runner's stderr (faulthandler's dump: paths, threads) stays in the server log."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer
from tests.e2e.sched_util import SENTENCE, STT, own_server, ps, speak

pytestmark = pytest.mark.e2e

REQUEST_ID = "e2e-crash-7"


def test_runner_crash_in_an_sse_stream_carries_no_stderr(tmp_path: Path, pulled: VoxServer) -> None:
    with own_server(pulled, tmp_path / "crash.log") as server, server.client() as client:
        wav = speak(client, " ".join([SENTENCE] * 6)).content
        form = {"model": STT, "stream": "true"}
        warm = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data=form)
        assert warm.status_code == 200, warm.text
        pid = ps(client)[STT]["pid"]
        result: list[httpx.Response] = []

        def call() -> None:
            with server.client() as c:
                result.append(
                    c.post(
                        "/v1/audio/transcriptions",
                        files={"file": ("a.wav", wav)},
                        data=form,
                        headers={"X-Request-Id": REQUEST_ID},
                    )
                )

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 30
        while not ps(client).get(STT, {}).get("in_flight") and time.monotonic() < deadline:
            time.sleep(0.01)
        # SIGSEGV, not SIGKILL: faulthandler writes a dump (file paths, threads) to stderr.
        os.kill(pid, signal.SIGSEGV)
        thread.join(60)
        (response,) = result
        assert response.status_code == 200  # the stream had begun
        assert response.headers["x-request-id"] == REQUEST_ID
        last = json.loads(response.text.strip().splitlines()[-1].removeprefix("data: "))
        assert last["error"]["code"] == "runner_died", last
        assert last["request_id"] == REQUEST_ID
        for leak in ("Fatal Python error", 'File "', "site-packages", "Thread 0x", str(pid)):
            assert leak not in response.text, response.text
        log = server.log()
        assert f"[{REQUEST_ID}]" in log
        assert "runner stderr:" in log  # the dump's last 20 lines, under the request id's line

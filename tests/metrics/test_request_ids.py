"""End to end: a request's id (its own, or the client's X-Request-Id) is in its response
headers and on every server log line about it, including the scheduler's load lines for the
model it asked for; lines about no request (an idle unload) carry none."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import VoxServer
from tests.e2e.sched_util import SENTENCE, STT, TTS, own_server, ps

pytestmark = pytest.mark.e2e


def test_request_ids_follow_each_request_into_the_scheduler(
    tmp_path: Path, pulled: VoxServer
) -> None:
    with own_server(pulled, tmp_path / "ids.log", log_format="json", keep_alive="1s") as server:
        with server.client() as client:
            body = {"model": TTS, "input": SENTENCE, "response_format": "wav"}
            spoken = client.post(
                "/api/synthesize", json=body, headers={"X-Request-Id": "trace-speak-1"}
            )
            assert spoken.status_code == 200
            assert spoken.headers["x-request-id"] == "trace-speak-1"
            # The scheduler's loop task began inside the first request: the second load
            # must still be logged under the second request's id.
            heard = client.post(
                "/api/transcribe",
                files={"file": ("a.wav", spoken.content)},
                data={"model": STT},
                headers={"X-Request-Id": "trace-hear-2"},
            )
            assert heard.status_code == 200
            assert heard.headers["x-request-id"] == "trace-hear-2"
            own = client.get("/api/list")
            assert own.headers["x-request-id"].startswith("req_")  # one is made when none sent
            deadline = time.monotonic() + 60
            while ps(client) and time.monotonic() < deadline:  # both idle out (keep_alive 1s)
                time.sleep(0.1)
            assert not ps(client)
        records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    loaded = {
        r["message"].split()[1]: r.get("request_id")
        for r in records
        if r["message"].startswith("loaded ")
    }
    assert loaded == {TTS: "trace-speak-1", STT: "trace-hear-2"}, loaded
    idle = [r for r in records if "keep_alive" in r["message"] and "unloading" in r["message"]]
    assert idle, [r["message"] for r in records]
    assert all("request_id" not in r for r in idle)

"""End to end: concurrent transcriptions through the real server ride in one whisper batch and
each gets its own transcript, as good as the same clip transcribed alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer, wer
from tests.e2e.sched_util import own_server, speak, transcribe

pytestmark = pytest.mark.e2e

SENTENCES = (
    "The old lighthouse stood at the edge of the cliff for a hundred years.",
    "Every morning the baker opened his shop before the sun came up.",
    "She packed her bags, locked the door, and walked down to the station.",
    "Please remember to water the plants and feed the cat while we are away.",
)


def test_concurrent_transcriptions_are_batched_and_each_gets_its_own_text(
    tmp_path: Path, pulled: VoxServer
) -> None:
    # Debug: the runners' own log lines (stderr) reach the server log only at that level.
    with own_server(pulled, tmp_path / "batch.log", num_parallel="1", log_level="debug") as server:
        with server.client() as client:
            clips = []
            for text in SENTENCES:
                response = speak(client, text)
                assert response.status_code == 200, response.text
                clips.append(response.content)
            alone = []
            for clip in clips:
                response = transcribe(client, clip)
                assert response.status_code == 200, response.text
                alone.append(response.json()["text"])
        barrier = threading.Barrier(len(clips))

        def call(clip: bytes) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                barrier.wait()
                return transcribe(c, clip)

        with ThreadPoolExecutor(len(clips)) as pool:
            responses = list(pool.map(call, clips))
        log = server.log()
    texts = [r.json()["text"] for r in responses]
    for text, solo, sentence in zip(texts, alone, SENTENCES, strict=True):
        # Each answer is its own clip's (no mix-up within the batch) and as good as alone.
        assert wer(sentence, text) <= wer(sentence, solo) + 0.1, (text, solo)
    # The first request runs alone; those that queued behind it share one model call.
    assert "requests in one batch" in log, log[-3000:]

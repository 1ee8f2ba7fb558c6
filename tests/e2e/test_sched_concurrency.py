"""End to end: a bounded queue answers 429 and never hangs; concurrent TTS is interleaved."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer
from tests.e2e.sched_util import TTS, own_server, speak

pytestmark = pytest.mark.e2e


def test_32_concurrent_requests_against_a_queue_of_4(tmp_path: Path, pulled: VoxServer) -> None:
    with own_server(pulled, tmp_path / "queue.log", max_queue="4", num_parallel="1") as server:
        with server.client() as client:
            assert speak(client, "Warm up.").status_code == 200
        barrier = threading.Barrier(32)

        def call(i: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                barrier.wait()
                return speak(c, f"Request number {i} of thirty two.")

        started = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            responses = list(pool.map(call, range(32)))
        elapsed = time.monotonic() - started
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}, codes
    assert codes.count(429) >= 20, codes  # at most 1 running + 4 queued at any moment
    assert codes.count(200) >= 5, codes
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["code"] == "queue_full"
        else:
            assert response.content[:4] == b"RIFF"
    assert elapsed < 110  # none hung (each call's own timeout is 120 s)


def _first_audio_and_third_sentence(
    url: str, text: str, sentence_bytes: int, barrier: threading.Barrier
) -> tuple[float, float]:
    """Stream pcm; times (monotonic) of the first audio and of audio past two sentences."""
    first = third = 0.0
    received = 0
    body = {"model": TTS, "input": text, "response_format": "pcm", "sample_rate": 22050}
    with httpx.Client(base_url=url, timeout=120) as client:
        barrier.wait()
        with client.stream("POST", "/v1/audio/speech", json=body) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received += len(chunk)
                now = time.monotonic()
                if not first:
                    first = now
                if not third and received > 2.5 * sentence_bytes:
                    third = now
    assert third, (received, sentence_bytes)
    return first, third


def test_four_streamed_syntheses_get_first_audio_before_anyone_a_third_sentence(
    pulled: VoxServer,
) -> None:
    sentence = "Every client hears its first sentence quickly today."
    with pulled.client() as client:
        one = client.post(
            "/v1/audio/speech",
            json={"model": TTS, "input": sentence, "response_format": "pcm", "sample_rate": 22050},
        )
        assert one.status_code == 200
    text = " ".join([sentence] * 5)
    barrier = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(
                _first_audio_and_third_sentence, pulled.url, text, len(one.content), barrier
            )
            for _ in range(4)
        ]
        times = [f.result(timeout=300) for f in futures]
    last_first = max(first for first, _ in times)
    earliest_third = min(third for _, third in times)
    assert last_first < earliest_third, times

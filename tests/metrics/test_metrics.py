"""End to end: /metrics through a real `vox serve` moves as the server works.

Each scenario reads the counters, histograms and gauges with prometheus-client's own parser:
a pull, a synthesis and a transcription, an eviction under a small budget, a queue overflow
(429), a runner killed mid-request (crash, then restart), and the token and open listener.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer, free_port
from tests.e2e.sched_util import SENTENCE, STT, TTS, own_server, ps, speak, transcribe
from tests.metrics.scrape import series, value

pytestmark = pytest.mark.e2e


def scrape(client: httpx.Client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_a_pull_counts_bytes_duration_and_the_sandbox(pulled: VoxServer) -> None:
    # The session server started on an empty store: it pulled both defaults itself.
    with pulled.client() as client:
        text = scrape(client)
    for name in (STT, TTS):
        assert value(text, "vox_pulls_total", model=name, result="success") >= 1, name
        assert value(text, "vox_pull_duration_seconds_count", model=name) >= 1
        assert value(text, "vox_pull_bytes_total", model=name) > 1_000_000  # model files
    assert value(text, "vox_sandbox_builds_total") >= 2
    assert value(text, "vox_pulls_total", result="failure") == 0
    assert value(text, "vox_requests_total", route="/api/pull", method="POST", status="200") >= 2


def test_synthesis_transcription_and_an_eviction_under_a_small_budget(
    tmp_path: Path, pulled: VoxServer
) -> None:
    with own_server(pulled, tmp_path / "work.log") as server, server.client() as client:
        wav = speak(client).content
        assert transcribe(client, wav).status_code == 200
        sizes = {name: m["memory_mb"] for name, m in ps(client).items()}
        text = scrape(client)
    spoken_s = (len(wav) - 44) / 2 / 22050  # piper's joe: 22.05 kHz pcm16 in a wav
    assert value(text, "vox_requests_total", route="/api/synthesize", status="200", model=TTS) == 1
    assert value(text, "vox_requests_total", route="/api/transcribe", status="200", model=STT) == 1
    assert value(text, "vox_request_duration_seconds_count", route="/api/transcribe") == 1
    assert value(text, "vox_time_to_first_audio_seconds_count", transport="http", model=TTS) == 1
    assert 0 < value(text, "vox_time_to_first_audio_seconds_sum", model=TTS) < 60
    assert value(text, "vox_audio_seconds_total", direction="out", model=TTS) == pytest.approx(
        spoken_s, rel=0.05
    )
    assert value(text, "vox_audio_seconds_total", direction="in", model=STT) == pytest.approx(
        spoken_s, rel=0.05
    )
    assert value(text, "vox_real_time_factor_count", kind="stt", model=STT) == 1
    assert value(text, "vox_real_time_factor_count", kind="tts", model=TTS) == 1
    assert value(text, "vox_model_load_seconds_count", model=STT) == 1
    assert {s["model"] for s in series(text, "vox_model_loaded")} == {STT, TTS}
    assert all(s["device"] == "cpu" for s in series(text, "vox_model_loaded"))
    for name in (STT, TTS):
        measured = value(text, "vox_model_memory_bytes", model=name)
        assert measured == pytest.approx(sizes[name] * 2**20, rel=0.1)  # ps rounds; peaks grow
        assert value(text, "vox_model_in_flight", model=name) == 0
    assert value(text, "vox_memory_budget_bytes", pool="cpu") > 0
    assert value(text, "vox_memory_free_bytes", pool="cpu") > 0

    # Room for the bigger of the two, never both: each switch evicts the other.
    budget = max(sizes.values()) * 1.3
    assert budget < sum(sizes.values()), sizes
    memory = pulled.home / "memory.json"
    remembered = json.loads(memory.read_text())
    memory.write_text(json.dumps({**remembered, **{f"{n}@cpu": mb for n, mb in sizes.items()}}))
    small = own_server(pulled, tmp_path / "budget.log", memory_budget=f"{budget:.0f}MB")
    with small as server, server.client() as client:
        assert transcribe(client, wav).status_code == 200
        assert speak(client).status_code == 200
        text = scrape(client)
    assert value(text, "vox_model_unloads_total", model=STT, reason="evicted") == 1
    assert value(text, "vox_memory_budget_bytes", pool="cpu") == pytest.approx(
        round(budget) * 2**20
    )
    assert series(text, "vox_model_loaded") == [{"model": TTS, "adapter": "piper", "device": "cpu"}]


def test_a_queue_overflow_counts_its_429s(tmp_path: Path, pulled: VoxServer) -> None:
    with own_server(pulled, tmp_path / "queue.log", max_queue="1", num_parallel="1") as server:
        with server.client() as client:
            assert speak(client, "Warm up.").status_code == 200
        barrier = threading.Barrier(12)

        def call(i: int) -> int:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                barrier.wait()
                return speak(c, f"Request number {i} of twelve.").status_code

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(call, range(12)))
        with server.client() as client:
            text = scrape(client)
    refused = codes.count(429)
    assert refused >= 6, codes  # one runs, one waits, the rest are refused
    assert value(text, "vox_refusals_total", model=TTS, code="queue_full") == refused
    assert value(text, "vox_requests_total", route="/api/synthesize", status="429") == refused
    assert value(text, "vox_requests_total", route="/api/synthesize", status="200") == 13 - refused


def test_a_runner_killed_mid_request_counts_a_crash_then_a_restart(
    tmp_path: Path, pulled: VoxServer
) -> None:
    with own_server(pulled, tmp_path / "crash.log") as server, server.client() as client:
        wav = speak(client, " ".join([SENTENCE] * 6)).content
        assert transcribe(client, wav).status_code == 200
        pid = ps(client)[STT]["pid"]
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            with server.client() as c:
                result["response"] = transcribe(c, wav)

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 30
        while not ps(client).get(STT, {}).get("in_flight") and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        thread.join(30)
        response = result["response"]
        assert response.status_code == 502, (response.text, server.log()[-3000:])
        text = scrape(client)
        assert value(text, "vox_runner_crashes_total", model=STT, cause="exited") == 1, text
        assert value(text, "vox_runner_restarts_total", model=STT) == 0
        assert value(text, "vox_requests_total", route="/api/transcribe", status="502") == 1
        assert transcribe(client, wav).status_code == 200
        text = scrape(client)
    assert value(text, "vox_runner_restarts_total", model=STT) == 1
    assert value(text, "vox_model_load_seconds_count", model=STT) == 2


def test_metrics_need_the_token_except_on_the_open_listener(
    tmp_path: Path, pulled: VoxServer
) -> None:
    port = free_port()
    server = VoxServer(
        pulled.home,
        tmp_path / "auth.log",
        env={
            "VOX_PULL_DEFAULTS": "false",
            "VOX_API_KEY": "s3cret-token",
            "VOX_METRICS_ADDR": f"127.0.0.1:{port}",
        },
    )
    server.start()
    try:
        with server.client() as client:
            assert client.get("/metrics").status_code == 401
            headers = {"Authorization": "Bearer s3cret-token"}
            assert "vox_requests_total" in client.get("/metrics", headers=headers).text
            assert client.get("/api/ready").status_code == 200  # a probe carries no secret
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert value(text, "vox_memory_budget_bytes", pool="cpu") > 0
        assert value(text, "vox_requests_total", route="/metrics", status="200") >= 1
    finally:
        server.stop()
    # Scrapes stay out of the access log (a refused one is logged, as every 4xx is).
    assert '"GET /metrics HTTP/1.1" 200' not in server.log()
    assert '"GET /metrics HTTP/1.1" 401' in server.log()


def test_a_websocket_session_is_counted_open_and_times_its_first_audio(
    tmp_path: Path, pulled: VoxServer
) -> None:
    from tests.streaming.helpers import drain, open_ws

    with own_server(pulled, tmp_path / "ws.log") as server, server.client() as client:
        with open_ws(server.url, "/v1/audio/speech/stream") as ws:
            ws.send(json.dumps({"type": "config", "model": TTS}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"  # the model loaded
            text = scrape(client)
            assert value(text, "vox_sessions_open", route="/v1/audio/speech/stream") == 1
            ws.send(json.dumps({"type": "text", "text": SENTENCE}))
            ws.send(json.dumps({"type": "end"}))
            assert drain(ws).close_code == 1000
        deadline = time.monotonic() + 10
        while value(scrape(client), "vox_sessions_open", route="/v1/audio/speech/stream"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        text = scrape(client)
    assert value(text, "vox_time_to_first_audio_seconds_count", transport="websocket") == 1
    # From the text, not from the config: the model's load is not in it.
    ttfa = value(text, "vox_time_to_first_audio_seconds_sum", transport="websocket", model=TTS)
    loaded = value(text, "vox_model_load_seconds_sum", model=TTS)
    assert 0 < ttfa < 30
    assert loaded > 0
    assert value(text, "vox_requests_total", route="/v1/audio/speech/stream", status="101") == 1

"""The metrics middleware, the scheduler's hooks and the scrape-time collector, with fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, get, websocket
from litestar.connection import WebSocket
from litestar.response import Stream
from litestar.testing import TestClient
from vox_control.errors import Overloaded
from vox_control.metrics import MB, Metrics, note_model, unload_reason
from vox_control.scheduler.loop import Scheduler

from tests.control.fakes import Harness
from tests.metrics.scrape import series, value


def _app(metrics: Metrics) -> Litestar:
    @get("/items/{item:int}")
    async def item(item: int) -> dict[str, int]:
        note_model("m")
        return {"item": item}

    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @get("/api/synthesize")  # a speech route: its first body bytes are the TTFA
    async def speech() -> Stream:
        note_model("tts")

        async def chunks() -> AsyncIterator[bytes]:
            yield b""
            yield b"RIFF"

        return Stream(chunks(), media_type="audio/wav")

    @get("/", media_type="text/html")  # the playground page: not speech, though "/" is
    async def page() -> str:  # the realtime socket's path too
        return "<html></html>"

    @websocket("/v1/audio/speech/stream")
    async def stream(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        note_model("tts")
        await socket.receive_text()
        await socket.send_bytes(b"\x00\x00")
        await socket.receive_text()  # the session stays open until the client's "done"
        await socket.close()

    handlers = [item, boom, speech, page, stream]
    return Litestar(handlers, middleware=[metrics.middleware], debug=False)


def test_requests_are_counted_by_route_template_with_bounded_labels() -> None:
    metrics = Metrics()
    with TestClient(_app(metrics)) as client:
        for i in range(5):
            assert client.get(f"/items/{i}").status_code == 200
        assert client.get("/boom").status_code == 500
        assert client.get("/no/such/path").status_code == 404
    text = metrics.exposition().decode()
    routes = {s["route"] for s in series(text, "vox_requests_total")}
    assert routes == {"/items/{item}", "/boom"}  # raw paths never become labels
    assert value(text, "vox_requests_total", route="/items/{item}", status="200", model="m") == 5
    assert value(text, "vox_requests_total", route="/boom", status="500") == 1
    assert value(text, "vox_request_duration_seconds_count", route="/items/{item}") == 5


def test_time_to_first_audio_and_open_sessions() -> None:
    metrics = Metrics()
    with TestClient(_app(metrics)) as client:
        assert client.get("/api/synthesize").content == b"RIFF"
        assert client.get("/").status_code == 200
        with client.websocket_connect("/v1/audio/speech/stream") as ws:
            text = metrics.exposition().decode()
            assert value(text, "vox_sessions_open", route="/v1/audio/speech/stream") == 1
            ws.send_text("Hello.")
            assert ws.receive_bytes() == b"\x00\x00"
            ws.send_text("done")
    text = metrics.exposition().decode()
    assert value(text, "vox_time_to_first_audio_seconds_count", transport="http", model="tts") == 1
    assert value(text, "vox_time_to_first_audio_seconds_count", transport="websocket") == 1
    assert value(text, "vox_sessions_open", route="/v1/audio/speech/stream") == 0
    assert value(text, "vox_requests_total", route="/v1/audio/speech/stream", status="101") == 1


def test_unload_reasons_are_a_bounded_set() -> None:
    assert unload_reason("evicted (LRU) to make room for x") == "evicted"
    assert unload_reason("idle for 300s (keep_alive)") == "keep_alive"
    assert unload_reason("keep_alive 0") == "keep_alive"
    assert unload_reason("unload requested") == "requested"
    assert unload_reason("anything else") == "other"


def _harness(tmp: Path, **kw: Any) -> tuple[Harness, Metrics]:
    h = Harness(tmp, **kw)
    metrics = Metrics()
    h.scheduler = Scheduler(
        h.scheduler._settings,
        h.resolve,
        h.spawn,
        probe=h.probe,  # type: ignore[arg-type]
        measurements=h.measurements,
        clock=h.clock,
        metrics=metrics,
    )
    metrics.watch(h.scheduler)
    return h, metrics


async def test_the_collector_reads_the_scheduler_at_scrape_time(tmp_path: Path) -> None:
    h, metrics = _harness(tmp_path, budget=1000, sizes={"a": 300.0})
    async with h.scheduler.use("a"):
        text = metrics.exposition().decode()
        loaded = series(text, "vox_model_loaded")
        assert loaded == [{"model": "a", "adapter": "fake", "device": "cpu"}]
        assert value(text, "vox_model_in_flight", model="a") == 1
        assert value(text, "vox_model_memory_bytes", model="a") == 300 * MB
        assert value(text, "vox_memory_budget_bytes", pool="cpu") == 1000 * MB
        assert value(text, "vox_queue_depth", model="a") == 0
    text = metrics.exposition().decode()
    assert value(text, "vox_model_in_flight", model="a") == 0
    assert value(text, "vox_model_load_seconds_count", model="a") == 1
    assert value(text, "vox_queue_wait_seconds_count", model="a") == 1
    await h.scheduler.stop()


async def test_refusals_failures_evictions_crashes_and_restarts(tmp_path: Path) -> None:
    h, metrics = _harness(
        tmp_path,
        budget=500,
        sizes={"a": 300.0, "b": 300.0},
        fail={"bad"},
        max_queue=0,
        num_parallel=1,
    )
    async with h.scheduler.use("a"):
        with pytest.raises(Overloaded):
            async with h.scheduler.use("a"):
                pass
    await h.touch("b")  # a does not fit beside b: evicted
    with pytest.raises(Exception, match="bad"):
        await h.touch("bad")
    h.runners("b")[0].crash()
    for _ in range(5):
        await asyncio.sleep(0)
    await h.touch("b")  # a fresh runner: a restart
    text = metrics.exposition().decode()
    assert value(text, "vox_refusals_total", model="a", code="queue_full") == 1
    assert value(text, "vox_model_unloads_total", model="a", reason="evicted") == 1
    assert value(text, "vox_model_load_failures_total", model="bad") == 1
    assert value(text, "vox_runner_crashes_total", model="b", cause="exited") == 1
    assert value(text, "vox_runner_restarts_total", model="b") == 1
    await h.scheduler.stop()


def test_each_app_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.refusals.labels("a", "queue_full").inc()
    assert value(two.exposition().decode(), "vox_refusals_total") == 0


def test_the_grafana_dashboard_queries_only_metrics_that_exist(tmp_path: Path) -> None:
    import json
    import re

    from prometheus_client.parser import text_string_to_metric_families

    dashboard = Path(__file__).parents[2] / "deploy" / "grafana" / "vox.json"
    exprs = [
        target["expr"]
        for panel in json.loads(dashboard.read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    used = {
        re.sub(r"_(bucket|total|count|sum)$", "", name)
        for expr in exprs
        for name in re.findall(r"\bvox_[a-z_]+", expr)
    }
    _, metrics = _harness(tmp_path)
    families = {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}
    assert used <= families, used - families
    assert len(used) >= 15

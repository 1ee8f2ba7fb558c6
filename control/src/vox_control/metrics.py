"""Prometheus metrics: every metric object, the ASGI middleware that counts requests, the
scrape-time collector over the scheduler, and the optional open listener for scrapers.

One ``Metrics`` per app, each with its own CollectorRegistry (tests build many apps in one
process). Counters and histograms move on events (a request answered, a load, an eviction);
what the scheduler holds right now (loaded models, their memory, queues, the budget) is read by
a custom Collector only when someone scrapes, so nothing is updated on the request path.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vox_control.settings import split_host

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

    from vox_control.scheduler.loop import Scheduler

MB = 1024 * 1024
# Latency buckets from a first streamed chunk (tens of ms) to a long transcription (minutes).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600)
LOAD_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)
PULL_BUCKETS = (0.5, 1, 5, 10, 30, 60, 120, 300, 900, 1800)
# Speech routes: their first body bytes (HTTP) or first audio frame (WebSocket) is the TTFA.
# "/" is a realtime WebSocket, and over HTTP the playground page: only its socket counts.
SPEECH_HTTP = frozenset({"/api/synthesize", "/v1/audio/speech"})
SPEECH_SOCKETS = frozenset({"/v1/audio/speech/stream"})
REALTIME_SOCKETS = frozenset({"/v1/realtime/tts", "/v1/realtime/stt", "/"})
# The realtime protocol carries audio as base64 in JSON events of this type.
_REALTIME_AUDIO = '"response.audio.delta"'


@dataclass
class _Request:
    """What the middleware learns about one request while it runs: its model, from the
    scheduler (so the label is an installed model's name, never a client's free text)."""

    model: str = ""
    metrics: Metrics | None = None


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "vox_metrics_request", default=None
)


def note_model(name: str) -> None:
    """Label the current request with ``name`` (called where the scheduler grants a model)."""
    request = _current.get()
    if request is not None:
        request.model = name


def speech_done(kind: str, audio_s: float, started: float) -> None:
    """Count one runner request's audio for the current request's app and model (sessions
    included: their tasks run in the request's context); outside any request, nothing."""
    request = _current.get()
    if request is not None and request.metrics is not None:
        request.metrics.speech_done(kind, request.model, audio_s, started)


def unload_reason(why: str) -> str:
    """The scheduler's unload message as a bounded label."""
    if why.startswith("evicted"):
        return "evicted"
    if why.startswith(("idle", "keep_alive")):
        return "keep_alive"
    if why.startswith("unload requested"):
        return "requested"
    return "other"


class Metrics:
    """Every metric of one app, registered in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vox_requests",
            "Requests answered, by route template, method, status and model.",
            ["route", "method", "status", "model"],
            registry=r,
        )
        self.latency = Histogram(
            "vox_request_duration_seconds",
            "Time from a request's arrival to its last byte (a session's whole life).",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttfa = Histogram(
            "vox_time_to_first_audio_seconds",
            "Time from a speech request (or a session's text) to its first audio.",
            ["transport", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions = Gauge(
            "vox_sessions_open", "WebSocket sessions open, by route.", ["route"], registry=r
        )
        self.audio = Counter(
            "vox_audio_seconds",
            "Seconds of audio transcribed (in) and synthesized (out).",
            ["direction", "model"],
            registry=r,
        )
        self.rtf = Histogram(
            "vox_real_time_factor",
            "Processing time over audio duration, per runner request.",
            ["kind", "model"],
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "vox_queue_wait_seconds",
            "Time a request waited for its model (load, memory, queue).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refusals = Counter(
            "vox_refusals",
            "Requests the scheduler refused: queue_full (429), insufficient_memory (503).",
            ["model", "code"],
            registry=r,
        )
        self.load_seconds = Histogram(
            "vox_model_load_seconds",
            "Time to start a runner and load its model.",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.load_failures = Counter(
            "vox_model_load_failures", "Loads that failed.", ["model"], registry=r
        )
        self.unloads = Counter(
            "vox_model_unloads",
            "Runners unloaded, by reason: evicted (LRU, to make room), keep_alive, requested.",
            ["model", "reason"],
            registry=r,
        )
        self.crashes = Counter(
            "vox_runner_crashes",
            "Runners that exited unasked: exited (died) or stalled (killed by the watchdog).",
            ["model", "cause"],
            registry=r,
        )
        self.restarts = Counter(
            "vox_runner_restarts",
            "Runners started for a model whose previous runner crashed.",
            ["model"],
            registry=r,
        )
        self.pulls = Counter(
            "vox_pulls", "Pulls finished, by result.", ["model", "result"], registry=r
        )
        self.pull_bytes = Counter(
            "vox_pull_bytes", "Bytes the pulls reported fetched.", ["model"], registry=r
        )
        self.pull_seconds = Histogram(
            "vox_pull_duration_seconds",
            "Time a pull took, success or not.",
            ["model"],
            buckets=PULL_BUCKETS,
            registry=r,
        )
        self.sandbox_builds = Counter(
            "vox_sandbox_builds",
            "Sandbox preparations (a build, or finding one ready), by result.",
            ["adapter", "result"],
            registry=r,
        )

    # ------------------------------------------------------------------ events

    def speech_done(self, kind: str, model: str, audio_s: float, started: float) -> None:
        """One runner request's audio: seconds in (stt) or out (tts), and its real-time factor."""
        if audio_s <= 0:
            return
        self.audio.labels("in" if kind == "stt" else "out", model).inc(audio_s)
        self.rtf.labels(kind, model).observe((time.perf_counter() - started) / audio_s)

    def pull_done(self, model: str, result: str, fetched: int, started: float) -> None:
        self.pulls.labels(model, result).inc()
        self.pull_bytes.labels(model).inc(fetched)
        self.pull_seconds.labels(model).observe(time.perf_counter() - started)

    def watch(self, scheduler: Scheduler) -> None:
        """Read the scheduler's state at scrape time (once per app)."""
        self.registry.register(SchedulerCollector(scheduler))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Litestar middleware: counts and times each routed request by its route template."""
        return _middleware(self, app)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def serve_open(self, address: str) -> Callable[[], None]:
        """Serve the metrics on ``address`` ("host:port", ":port" for loopback) without the
        token, for a scraper; returns what stops it. prometheus-client's own small server
        runs in a thread and answers nothing but the metrics; the collector's reads of the
        scheduler are copies made under the GIL."""
        _, host, port = split_host(address)  # checked at start by auth.check_bind
        if port is None:
            raise ValueError(f"VOX_METRICS_ADDR / --metrics-addr {address!r}: no port")
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return stop


def _middleware(metrics: Metrics, app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]  # ScopeType is a str enum; Litestar loads after this module
        if kind not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        http = kind == "http"
        route = scope.get("path_template") or "unmatched"
        request = _Request(metrics=metrics)
        token = _current.set(request)
        started = time.perf_counter()
        state = _Exchange(
            metrics,
            request,
            http,
            "http" if http else "realtime" if route in REALTIME_SOCKETS else "websocket",
            started if http else None,
        )
        speech = route in (SPEECH_HTTP if http else SPEECH_SOCKETS | REALTIME_SOCKETS)
        sessions = None if http else metrics.sessions.labels(route)
        if sessions is not None:
            sessions.inc()
        try:
            if speech:
                await app(scope, state.wrap_receive(receive), state.wrap_send(send))
            else:
                await app(scope, receive, state.wrap_status(send))
        finally:
            if sessions is not None:
                sessions.dec()
            _current.reset(token)
            method = scope.get("method", "GET") if http else "WS"
            metrics.requests.labels(route, method, state.status, request.model).inc()
            metrics.latency.labels(route, request.model).observe(time.perf_counter() - started)

    return middleware


class _Exchange:
    """One request's status, and for speech when its audio started (the TTFA)."""

    def __init__(
        self,
        metrics: Metrics,
        request: _Request,
        http: bool,
        transport: str,
        waiting_since: float | None,
    ) -> None:
        self.metrics = metrics
        self.request = request
        self.http = http
        self.transport = transport
        self.status = "500"  # an app that raises without answering
        # HTTP: from the request's arrival; WebSocket: from the first text frame the session
        # reads after its first answer, or after its last audio.
        self.waiting_since = waiting_since
        self.handshaken = False

    def note(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = str(message["status"])
        elif message["type"] == "websocket.accept":
            self.status = "101"
        elif message["type"] == "websocket.close" and self.status != "101":
            self.status = "403"  # refused before accepting

    def wrap_status(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            self.note(message)
            await send(message)

        return wrapped

    def wrap_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            self.note(message)
            if self.waiting_since is not None and self._is_audio(message):
                elapsed = time.perf_counter() - self.waiting_since
                self.metrics.ttfa.labels(self.transport, self.request.model).observe(elapsed)
                self.waiting_since = None
            elif message["type"] == "websocket.send" and not self.handshaken:
                # The session's first answer ("ready" after its config, which may have loaded
                # the model): the wait starts at the next text the session reads.
                self.handshaken = True
                self.waiting_since = None
            await send(message)

        return wrapped

    def wrap_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> ReceiveMessage:
            message = await receive()
            if (
                message["type"] == "websocket.receive"
                and self.waiting_since is None
                and message.get("text") is not None
            ):
                self.waiting_since = time.perf_counter()
            return message

        return wrapped

    def _is_audio(self, message: Message) -> bool:
        """A first audio frame: a speech response's body bytes, a binary or audio-delta frame."""
        if message["type"] == "http.response.body":
            return self.status == "200" and bool(message.get("body"))
        if message["type"] == "websocket.send":
            if message.get("bytes"):
                return True
            text = message.get("text")
            return isinstance(text, str) and _REALTIME_AUDIO in text
        return False


class SchedulerCollector(Collector):
    """Loaded models, their memory and queues, and each pool's budget, read at scrape time."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def describe(self) -> list[Metric]:
        return []  # families depend on what is loaded; prometheus-client then skips checks

    def collect(self) -> Iterator[Metric]:
        scheduler = self._scheduler
        loaded = GaugeMetricFamily(
            "vox_model_loaded", "1 per loaded model.", labels=["model", "adapter", "device"]
        )
        memory = GaugeMetricFamily(
            "vox_model_memory_bytes",
            "Memory each loaded runner is charged: its measured peak (RSS or GPU per PID).",
            labels=["model", "device"],
        )
        in_flight = GaugeMetricFamily(
            "vox_model_in_flight", "Requests holding each loaded model.", labels=["model"]
        )
        queued = GaugeMetricFamily(
            "vox_queue_depth",
            "Requests waiting per model: beyond the parallel slots, or for the load.",
            labels=["model"],
        )
        for model in scheduler.loaded():
            device = model.info.device or model.spec.device
            loaded.add_metric([model.name, model.spec.adapter, device], 1)
            memory.add_metric([model.name, device], model.memory_mb * MB)
            in_flight.add_metric([model.name], model.refcount)
        for name, depth in scheduler.queue_depths().items():
            queued.add_metric([name], depth)
        budget = GaugeMetricFamily(
            "vox_memory_budget_bytes", "Memory Vox may use per pool.", labels=["pool"]
        )
        free = GaugeMetricFamily(
            "vox_memory_free_bytes", "Memory the OS or driver reports free.", labels=["pool"]
        )
        for pool in scheduler.pools():
            budget.add_metric([pool.name], pool.budget_mb * MB)
            free.add_metric([pool.name], pool.driver_free_mb * MB)
        loading = GaugeMetricFamily("vox_models_loading", "Loads in progress (0 or 1).")
        loading.add_metric([], 1 if scheduler.loading() is not None else 0)
        yield from (loaded, memory, in_flight, queued, budget, free, loading)

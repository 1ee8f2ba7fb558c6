"""A Ray Serve replica that is a Vox node: its own `vox serve` subprocess, proxied over loopback.

Each replica starts a real `vox serve` (own port, own scheduler, runners and memory budget) on
127.0.0.1 and forwards the requests the ingress hands it. Ray's model multiplexing decides which
models a replica holds: the `@serve.multiplexed` loader makes the node load the model through
its own scheduler (POST /api/load, keep_alive -1) and the eviction hook unloads it
(/api/unload), so Ray's per-replica LRU and the node's loaded set are the same set. The node
runs with VOX_KEEP_ALIVE=-1 so it never unloads on a timer of its own; it still evicts on its
memory budget, and then simply loads again on the next request (its scheduler queues it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from ray import serve
from ray.serve.handle import DeploymentHandle

log = logging.getLogger("vox_cluster.node")

# Hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy sets itself: never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip
# Ray's HTTP proxy sets these on the response itself (the node echoes Ray's request id).
PROXY_SET = frozenset({"date", "server", "x-request-id"})
NODE_HEADER = "x-vox-node"
START_TIMEOUT = 120.0
PUSH_PERIOD = 2.0  # seconds between the node's /api/ps snapshots to the registry


@dataclass(frozen=True)
class NodeConfig:
    """What every node of one deployment shares (the serve config's `node` section)."""

    home: str = ""  # one shared store for all nodes; empty: a home per replica under /tmp
    memory_budget: str = ""  # VOX_MEMORY_BUDGET per node ("4GB", "70%"); empty: Vox's default
    device: str = "auto"
    env: tuple[tuple[str, str], ...] = ()  # more VOX_* settings for every node


@dataclass(frozen=True)
class ProxyRequest:
    """One HTTP request as the ingress read it: plain data, so Ray can ship it to a replica."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


class LoadFailed(Exception):
    """The node refused to load a model; carries its HTTP answer for the client."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(f"load failed with {status}")
        self.status = status
        self.body = body
        self.content_type = content_type


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def forward_headers(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """The request headers a node should see: end-to-end ones only (Host is set per hop)."""
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]


class LoadedModel:
    """What the multiplexed loader returns; Ray calls `__del__` when its LRU evicts it."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._released = False

    def __del__(self) -> None:
        # Ray runs this in an executor on eviction; the flag keeps the later garbage
        # collection of the same object from unloading a second time.
        if self._released:
            return
        self._released = True
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{self.url}/api/unload", json={"model": self.name}, timeout=30)


def _multiplexed(
    limit: int, load: Callable[[str], Coroutine[Any, Any, LoadedModel]]
) -> Callable[[str], Coroutine[Any, Any, LoadedModel]]:
    """`serve.multiplexed` with the per-replica count chosen at deploy time, not import time."""

    async def get_model(model_id: str) -> LoadedModel:
        return await load(model_id)

    wrapped: Callable[[str], Coroutine[Any, Any, LoadedModel]] = serve.multiplexed(
        max_num_models_per_replica=limit
    )(get_model)
    return wrapped


class VoxNode:
    """The replica: starts `vox serve`, loads and unloads models for Ray, proxies requests."""

    def __init__(
        self, registry: DeploymentHandle[Any], models_per_replica: int, node: dict[str, Any]
    ) -> None:
        self.config = NodeConfig(
            home=str(node.get("home", "")),
            memory_budget=str(node.get("memory_budget", "")),
            device=str(node.get("device", "auto")),
            env=tuple(sorted((str(k), str(v)) for k, v in (node.get("env") or {}).items())),
        )
        context = serve.get_replica_context()
        self.name = f"{context.replica_id.unique_id}@{socket.gethostname()}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.registry = registry
        self.proc = self._start()
        self.client = httpx.AsyncClient(base_url=self.url, timeout=None)
        self.get_model = _multiplexed(models_per_replica, self._load)
        self._pusher: asyncio.Task[None] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        home = Path(self.config.home or f"/tmp/vox-cluster/{self.name}")
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "VOX_HOME": str(home),
            "VOX_KEEP_ALIVE": "-1",  # Ray's LRU unloads, not the node's idle timer
            "VOX_PULL_DEFAULTS": "false",  # the loader pulls on first use
            "VOX_PRELOAD": "none",  # Ray decides which models a replica holds
            "VOX_DEVICE": self.config.device,
            **dict(self.config.env),
        }
        if self.config.memory_budget:
            env["VOX_MEMORY_BUDGET"] = self.config.memory_budget
        log_path = home / f"node-{self.port}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vox_cli.main", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"vox serve exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    log.info("node %s: vox serve pid %d on %s", self.name, proc.pid, self.url)
                    return proc
            time.sleep(0.2)
        _stop(proc)
        raise RuntimeError(f"vox serve did not become healthy in {START_TIMEOUT:g}s")

    async def _load(self, model: str) -> LoadedModel:
        """Load through the node's scheduler; pull first if its store lacks the model."""
        body = {"model": model, "keep_alive": -1}
        response = await self.client.post("/api/load", json=body)
        if response.status_code == 404:
            pulled = await self.client.post("/api/pull", json={"model": model, "stream": False})
            if pulled.status_code != 200:
                raise LoadFailed(pulled.status_code, pulled.content, _type(pulled))
            response = await self.client.post("/api/load", json=body)
        if response.status_code != 200:
            raise LoadFailed(response.status_code, response.content, _type(response))
        await self._push()  # the ingress's /api/ps shows the load at once
        return LoadedModel(self.url, model)

    async def forward(self, request: ProxyRequest) -> AsyncIterator[dict[str, Any] | bytes]:
        """Stream one request through the node: a head dict first, then the body's chunks."""
        self._ensure_pusher()
        model = serve.get_multiplexed_model_id()
        if model:
            try:
                await self.get_model(model)
            except LoadFailed as exc:
                yield self._head(exc.status, [("content-type", exc.content_type)])
                yield exc.body
                return
        headers = [*forward_headers(request.headers), ("host", f"127.0.0.1:{self.port}")]
        url = request.path + (f"?{request.query}" if request.query else "")
        upstream = self.client.build_request(
            request.method, url, headers=headers, content=request.body
        )
        try:
            response = await self.client.send(upstream, stream=True)
        except httpx.TransportError as exc:
            # The node died (Ray's health probe will replace this replica): a clear 503
            # rather than a traceback, so clients retry.
            message = f"Vox node {self.name} is unavailable: {exc}"
            yield self._head(503, [("content-type", "application/json"), ("retry-after", "5")])
            yield json.dumps({"error": {"message": message, "type": "unavailable"}}).encode()
            return
        try:
            dropped = HOP_BY_HOP | PROXY_SET
            kept = [(k, v) for k, v in response.headers.items() if k.lower() not in dropped]
            yield self._head(response.status_code, kept)
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()

    def _head(self, status: int, headers: list[tuple[str, str]]) -> dict[str, Any]:
        return {"status": status, "headers": [*headers, (NODE_HEADER, self.name)]}

    def _ensure_pusher(self) -> None:
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.get_running_loop().create_task(self._push_forever())

    async def _push_forever(self) -> None:
        while True:
            await self._push()
            await asyncio.sleep(PUSH_PERIOD)

    async def _push(self) -> None:
        """Send this node's /api/ps to the registry, which the ingress merges for `vox ps`."""
        try:
            ps = (await self.client.get("/api/ps")).json()
        except (httpx.HTTPError, ValueError):
            return
        info = {
            "node": self.name,
            "pid": self.proc.pid,
            "host": socket.gethostname(),
            "url": self.url,
        }
        await self.registry.put.remote(self.name, {**info, "ps": ps})

    async def check_health(self) -> None:
        """Ray's health probe: a node whose `vox serve` died makes Ray replace this replica."""
        self._ensure_pusher()
        if self.proc.poll() is not None:
            raise RuntimeError(f"vox serve exited with {self.proc.returncode}")
        response = await self.client.get("/api/health", timeout=5)
        response.raise_for_status()

    def __del__(self) -> None:
        _stop(self.proc)


def _type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "application/json"))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the node's process group (it reaps its runners), then SIGKILL after a grace."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

"""Scheduler with fake runners: one load per model, fast path, refcounts, crash replacement."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from vox_control.runner_client import RunnerDied
from vox_control.scheduler import LoadError, LoadSpec, Scheduler
from vox_control.settings import Settings
from vox_protocol import Load, Loaded, ModelInfo


class FakeRunner:
    def __init__(self, name: str, *, fail_load: bool = False) -> None:
        self.name = name
        self.pid = 1000
        self.alive = True
        self.closed = False
        self.fail_load = fail_load
        self._ids = 0

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def request(self, message: Any) -> Any:
        assert isinstance(message, Load)
        await asyncio.sleep(0.01)
        if self.fail_load:
            raise RunnerDied(self.name, 1, ["boom"])
        return Loaded(id=message.id, info=ModelInfo(adapter="fake", kind="tts", sample_rate=16000))

    async def close(self, grace: float = 5.0) -> None:
        self.closed = True
        self.alive = False


class Harness:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.spawned: list[FakeRunner] = []
        self.fail = fail or set()

    async def resolve(self, name: str) -> LoadSpec:
        if name.startswith("missing"):
            raise KeyError(name)
        return LoadSpec(name, "fake", "tts", Path("/m"), Path("/py"), "cpu")

    async def spawn(self, spec: LoadSpec) -> Any:
        runner = FakeRunner(spec.name, fail_load=spec.name in self.fail)
        self.spawned.append(runner)
        return runner


def make(h: Harness) -> Scheduler:
    return Scheduler(Settings(), h.resolve, h.spawn)


async def test_concurrent_first_requests_share_one_load() -> None:
    h = Harness()
    sched = make(h)

    async def use() -> int:
        async with sched.use("a:b") as model:
            await asyncio.sleep(0.01)
            return id(model)

    ids = await asyncio.gather(*(use() for _ in range(10)))
    assert len(set(ids)) == 1
    assert len(h.spawned) == 1


async def test_refcount_tracks_request_lifetime() -> None:
    sched = make(Harness())
    async with sched.use("a:b") as model:
        assert model.refcount == 1
        async with sched.use("a:b"):
            assert model.refcount == 2
        assert model.refcount == 1
    assert model.refcount == 0
    with pytest.raises(RuntimeError):
        async with sched.use("a:b") as model:
            raise RuntimeError("request failed")
    assert model.refcount == 0


async def test_dead_runner_is_replaced_on_next_use() -> None:
    h = Harness()
    sched = make(h)
    async with sched.use("a:b"):
        pass
    h.spawned[0].alive = False
    async with sched.use("a:b") as model:
        assert model.runner is h.spawned[1]
    assert h.spawned[0].closed


async def test_failed_load_closes_runner_and_reports() -> None:
    h = Harness(fail={"a:b"})
    sched = make(h)
    with pytest.raises(LoadError, match="could not load a:b"):
        async with sched.use("a:b"):
            pass
    assert h.spawned[0].closed
    assert sched.loaded() == []


async def test_stop_reaps_every_runner_and_refuses_new_loads() -> None:
    h = Harness()
    sched = make(h)
    for name in ("a:b", "c:d"):
        async with sched.use(name):
            pass
    await sched.stop()
    assert all(r.closed for r in h.spawned)
    with pytest.raises(LoadError, match="shutting down"):
        async with sched.use("e:f"):
            pass


async def test_resolve_errors_propagate_untouched() -> None:
    sched = make(Harness())
    with pytest.raises(KeyError):
        async with sched.use("missing:x"):
            pass

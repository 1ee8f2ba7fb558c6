"""Fakes for the scheduler's seams: runners, a hand-advanced clock, a memory probe."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vox_control.metrics import Metrics
from vox_control.runner_client import RunnerDied
from vox_control.scheduler.loop import Scheduler
from vox_control.scheduler.memory import Measurements
from vox_control.scheduler.scheduled import LoadSpec
from vox_control.settings import Settings
from vox_protocol import Loaded, ModelInfo

_pids = itertools.count(1000)


class FakeRunner:
    def __init__(self, name: str, *, fail_load: bool = False) -> None:
        self.name = name
        self.pid = next(_pids)
        self.alive = True
        self.closed = False
        self.fail_load = fail_load
        self._ids = 0
        self._dead = asyncio.Event()
        self.busy_since: float | None = None  # scheduler clock; set by a test to play "busy"
        self.stalled: float | None = None
        self.ahead_seconds = 0.0  # no preload started it

    async def load(self, model_dir: str, **_: Any) -> Loaded:
        self._ids += 1
        await asyncio.sleep(0.01)
        if self.fail_load:
            raise RunnerDied(self.name, 1, ["boom"])
        info = ModelInfo(adapter="fake", kind="tts", sample_rate=16000, device="cpu")
        return Loaded(id=self._ids, info=info)

    def silent_for(self, now: float) -> float | None:
        return None if self.busy_since is None else now - self.busy_since

    def stall(self, silent_s: float) -> None:
        self.stalled = silent_s
        self.crash()

    @property
    def died(self) -> RunnerDied | None:
        return None if self.alive else RunnerDied(self.name, -9, ["killed"])

    def crash(self) -> None:
        self.alive = False
        self._dead.set()

    async def wait_dead(self) -> RunnerDied:
        await self._dead.wait()
        return RunnerDied(self.name, -9, ["killed"])

    async def close(self, grace: float = 5.0) -> None:
        self.closed = True
        self.crash()


class FakeClock:
    """Monotonic time that moves only when a test advances it."""

    def __init__(self) -> None:
        self.t = 0.0
        self._moved = asyncio.Condition()

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self.t >= deadline)

    async def advance(self, seconds: float) -> None:
        self.t += seconds
        async with self._moved:
            self._moved.notify_all()
        for _ in range(5):  # let woken timers and the unloads they start run
            await asyncio.sleep(0)


class FakeProbe:
    """A CPU pool of ``budget`` MB; each runner uses ``sizes[name]`` MB once loaded."""

    def __init__(self, budget: float, sizes: dict[str, float]) -> None:
        self.budget = budget
        self.sizes = sizes
        self.pids: dict[int, str] = {}
        self.driver_free = 1e9

    def pool(self, name: str) -> tuple[float, float, float]:
        return self.budget, self.driver_free, 0.0

    def usage_mb(self, pid: int, pool: str) -> float | None:
        name = self.pids.get(pid)
        return None if name is None else self.sizes.get(name)


class Harness:
    def __init__(
        self,
        tmp: Path,
        *,
        budget: float = 10_000,
        sizes: dict[str, float] | None = None,
        fail: set[str] | None = None,
        on_idle: Callable[[], None] | None = None,
        **settings: Any,
    ) -> None:
        self.spawned: list[FakeRunner] = []
        self.fail = fail or set()
        self.probe = FakeProbe(budget, sizes or {})
        self.clock = FakeClock()
        self.measurements = Measurements(tmp / "memory.json")
        self.metrics = Metrics()
        self.scheduler = Scheduler(
            Settings(home=tmp, **settings),
            self.resolve,
            self.spawn,
            probe=self.probe,  # type: ignore[arg-type]
            measurements=self.measurements,
            clock=self.clock,
            metrics=self.metrics,
            on_idle=on_idle,
        )

    async def resolve(self, name: str) -> LoadSpec:
        if name.startswith("missing"):
            raise KeyError(name)
        estimate = self.probe.sizes.get(name, 100.0)
        return LoadSpec(name, "fake", "tts", Path("/m"), Path("/py"), "cpu", memory_mb=estimate)

    async def spawn(self, spec: LoadSpec) -> Any:
        runner = FakeRunner(spec.name, fail_load=spec.name in self.fail)
        self.probe.pids[runner.pid] = spec.name
        self.spawned.append(runner)
        return runner

    def runners(self, name: str) -> list[FakeRunner]:
        return [r for r in self.spawned if r.name == name]

    def loaded(self) -> list[str]:
        return [m.name for m in self.scheduler.loaded()]

    async def touch(self, name: str, **kw: Any) -> None:
        async with self.scheduler.use(name, **kw):
            pass

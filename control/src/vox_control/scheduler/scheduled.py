"""What the scheduler keeps per model: the load spec, a loaded runner, a load failure, the clock."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vox_protocol import ModelInfo

from vox_control.runner_client import RunnerClient
from vox_control.scheduler.memory import pool_of


@dataclass(frozen=True)
class LoadSpec:
    """Everything needed to start a runner for one installed model."""

    name: str
    adapter: str
    kind: str
    model_dir: Path
    python: Path
    device: str
    options: dict[str, str | int | float | bool | None] = field(default_factory=dict)
    memory_mb: float = 0.0  # the catalog's estimate, used until a load has been measured

    @property
    def pool(self) -> str:
        return pool_of(self.device)


class Clock(Protocol):
    """Time for keep-alive expiry; tests pass a fake that advances by hand."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(deadline - time.monotonic(), 0.0))


@dataclass
class LoadedModel:
    """One runner with its model loaded, and the bookkeeping that decides its lifetime."""

    spec: LoadSpec
    runner: RunnerClient
    info: ModelInfo
    loaded_at: float  # scheduler clock
    loaded_wall: float  # time.time(), for ps
    last_used: float
    load_seconds: float
    memory_mb: float  # what the budget charges: max(peak_mb, floor_mb) once measured
    keep_alive: float
    measured: bool = False
    refcount: int = 0
    expires_at: float | None = None  # scheduler clock; None while in use or kept forever
    unloading: bool = False
    # Mean request duration (seconds), for an honest Retry-After.
    avg_seconds: float = 0.0
    peak_mb: float = 0.0  # the most this runner has held
    floor_mb: float = 0.0  # the remembered peak of this model when this runner started
    timer: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pool(self) -> str:
        return self.spec.pool

    @property
    def state(self) -> str:
        if self.unloading:
            return "unloading"
        if not self.runner.alive:
            return "exited"
        return "busy" if self.refcount else "idle"


@dataclass
class LoadFailure:
    """Consecutive load failures of one model; after a few it is marked failed for a while."""

    count: int
    reason: str
    at: float  # time.time() of the last failure
    retry_at: float  # scheduler clock: no new attempt before this once failed


@dataclass
class Loading:
    """The load in progress (there is at most one: loads go through one loop)."""

    spec: LoadSpec
    started_wall: float
    need_mb: float
    pid: int | None = None

"""Starting runners for the scheduler: spawn and Load, and the failure cool-down around it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from vox_protocol import ModelInfo

from vox_control.errors import LoadError
from vox_control.runner_client import RunnerClient, RunnerDied, RunnerRequestError
from vox_control.scheduler.scheduled import Clock, LoadedModel, LoadFailure, Loading, LoadSpec

log = logging.getLogger("vox.scheduler")

SpawnFn = Callable[[LoadSpec], Awaitable[RunnerClient]]

FAILED_AFTER = 3  # consecutive load failures before a model is marked failed
FAILED_COOLDOWN = 30.0  # seconds a failed model refuses loads (POST /api/load retries at once)


async def start_runner(
    spec: LoadSpec,
    spawn: SpawnFn,
    *,
    load_timeout: float,
    on_spawn: Callable[[int], None] = lambda pid: None,
) -> tuple[RunnerClient, ModelInfo]:
    """Spawn a runner and load ``spec`` into it; any failure closes it and raises LoadError."""
    started = time.perf_counter()
    try:
        runner = await spawn(spec)
    except (TimeoutError, RunnerDied, RunnerRequestError, OSError) as exc:
        raise LoadError.because(f"could not start the runner for {spec.name}", exc) from exc
    on_spawn(runner.pid)
    load = runner.load(str(spec.model_dir), device=spec.device, options=spec.options)
    try:
        reply = await asyncio.wait_for(load, load_timeout)
    except BaseException as exc:
        await runner.close(grace=1.0)
        # UnexpectedReply (a wrong answer to Load) is a RunnerRequestError too.
        if isinstance(exc, RunnerDied | RunnerRequestError | asyncio.TimeoutError):
            raise LoadError.because(f"could not load {spec.name}", exc) from exc
        raise
    log.info(
        "loaded %s in %.2fs%s (pid %d, %s, %s)",
        spec.name,
        time.perf_counter() - started + runner.ahead_seconds,
        f", {runner.ahead_seconds:.2f}s of it started ahead" if runner.ahead_seconds else "",
        runner.pid,
        reply.info.device,
        ",".join(reply.info.providers) or "-",
    )
    return runner, reply.info


class Loader:
    """One load at a time (the scheduler's loop serialises them), and the failures it saw."""

    def __init__(self, spawn: SpawnFn, clock: Clock, *, load_timeout: float) -> None:
        self._spawn = spawn
        self._clock = clock
        self._load_timeout = load_timeout
        self.loading: Loading | None = None
        self.failures: dict[str, LoadFailure] = {}

    def failed(self) -> dict[str, LoadFailure]:
        """The models marked failed: FAILED_AFTER failures in a row."""
        return {n: f for n, f in self.failures.items() if f.count >= FAILED_AFTER}

    def check(self, name: str) -> None:
        """Refuse a model marked failed until its cool-down is over."""
        failure = self.failures.get(name)
        if failure and failure.count >= FAILED_AFTER and self._clock.now() < failure.retry_at:
            raise LoadError(
                f"{name} failed to load {failure.count} times in a row and is marked failed: "
                f"{failure.reason} (POST /api/load retries now)"
            )

    async def load(self, spec: LoadSpec, need_mb: float, keep_alive: float) -> LoadedModel:
        """Start a runner for ``spec``; a failure is counted (and marks the model after a few)."""
        self.loading = Loading(spec, time.time(), need_mb)
        try:
            model = await self._start(spec, need_mb, keep_alive)
        except LoadError as exc:
            failure = self.failures.get(spec.name)
            count = failure.count + 1 if failure else 1
            self.failures[spec.name] = LoadFailure(
                count, str(exc), time.time(), self._clock.now() + FAILED_COOLDOWN
            )
            if count >= FAILED_AFTER:
                log.error("%s failed to load %d times; marked failed: %s", spec.name, count, exc)
            raise
        finally:
            self.loading = None
        self.failures.pop(spec.name, None)
        return model

    async def _start(self, spec: LoadSpec, need_mb: float, keep_alive: float) -> LoadedModel:
        started = self._clock.now()

        def spawned(pid: int) -> None:
            if self.loading is not None:
                self.loading.pid = pid

        runner, info = await start_runner(
            spec, self._spawn, load_timeout=self._load_timeout, on_spawn=spawned
        )
        now = self._clock.now()
        return LoadedModel(
            spec=spec,
            runner=runner,
            info=info,
            loaded_at=now,
            loaded_wall=time.time(),
            last_used=now,
            load_seconds=now - started + runner.ahead_seconds,
            memory_mb=need_mb,
            keep_alive=keep_alive,
        )

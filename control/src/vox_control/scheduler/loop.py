"""The scheduler: loads runners on demand within a measured memory budget, evicts LRU idle ones.

Shaped after ollama's server/sched.go: a request for a loaded model takes a fast path (no lock,
no queue); every other request becomes a pending entry that one loop serves in order, so loads
never overlap and a second request for a model being loaded simply finds it loaded when its turn
comes. Each request holds a reference for its whole lifetime; the keep-alive timer starts only
when the count drops to zero. When a model does not fit, the loop unloads the least recently
used idle runner, waits for its memory to be really free, and plans again. "Does it fit" and
"whom to evict" are pure functions in budget.py; spawn, resolve, memory probe and clock are seams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from vox_control.errors import LoadError, Overloaded, Unavailable
from vox_control.logs import request_id
from vox_control.metrics import Metrics, note_model, unload_reason
from vox_control.runner_client import RunnerDied, RunnerStalled
from vox_control.scheduler.budget import Plan, Resident, parse_keep_alive, parse_size_mb, plan
from vox_control.scheduler.expiry import Expiry
from vox_control.scheduler.ledger import Ledger
from vox_control.scheduler.loader import FAILED_AFTER, Loader, SpawnFn
from vox_control.scheduler.memory import Measurements, MemoryProbe
from vox_control.scheduler.queries import SchedulerQueries, detached
from vox_control.scheduler.scheduled import (
    Clock,
    LoadedModel,
    LoadSpec,
    MonotonicClock,
)
from vox_control.scheduler.watchdog import watch, watchdog_s
from vox_control.settings import Settings

__all__ = ["FAILED_AFTER", "LoadError", "LoadSpec", "LoadedModel", "Scheduler"]

log = logging.getLogger("vox.scheduler")

# Resolves a model name to a LoadSpec (store lookup + sandbox ensure); raises for unknown models.
ResolveFn = Callable[[str], Awaitable[LoadSpec]]


@dataclass
class _Pending:
    spec: LoadSpec
    keep_alive: float
    deadline: float  # event-loop time
    future: asyncio.Future[LoadedModel]
    evict: bool = True  # False: a preload, which neither evicts nor waits for memory
    # The request that asked: the loop's log lines while serving this entry carry its id.
    request_id: str | None = field(default_factory=request_id.get)


class Scheduler(SchedulerQueries):
    """Owns every runner; hands out loaded models to requests."""

    def __init__(
        self,
        settings: Settings,
        resolve: ResolveFn,
        spawn: SpawnFn,
        *,
        probe: MemoryProbe | None = None,
        measurements: Measurements | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_idle = on_idle  # called as the last request in flight ends
        self._metrics = metrics or Metrics()
        self._resolve = resolve
        self._ledger = Ledger(
            probe or MemoryProbe(settings.memory_budget, headroom_mb=settings.memory_headroom_mb),
            measurements or Measurements(settings.home / "memory.json"),
        )
        self._clock = clock or MonotonicClock()
        self._loader = Loader(spawn, self._clock, load_timeout=settings.load_timeout)
        if settings.memory_budget:
            parse_size_mb(settings.memory_budget, 100.0)  # a typo fails at start, not at load
        default = parse_keep_alive(settings.keep_alive)
        self._default_ttl = 300.0 if default is None else default
        self._capacity = max(settings.num_parallel, 1) + max(settings.max_queue, 0)
        self._loaded: dict[str, LoadedModel] = {}
        self._closing: dict[int, LoadedModel] = {}  # unloading runners, by pid, still in memory
        self._waiting: dict[str, int] = {}  # requests waiting for a load, per model
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._changed = asyncio.Event()  # a refcount hit zero, a runner went away, ...
        self._loop_task: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry = Expiry(self._clock, self._unload, self._spawn_task)
        self._closed = False
        self._crashed: set[str] = set()  # models whose last runner exited unasked

    # ------------------------------------------------------------------ requests

    @contextlib.asynccontextmanager
    async def use(
        self, name: str, *, keep_alive: float | None = None, evict: bool = True
    ) -> AsyncIterator[LoadedModel]:
        """Hold a reference to a loaded ``name`` for the lifetime of one request.

        ``keep_alive`` (seconds; FOREVER never unloads) replaces the model's idle lifetime, as a
        request's keep_alive does in Ollama; None keeps the server default. ``evict=False`` (a
        preload of a default model) loads only what fits beside the loaded models: it neither
        evicts nor waits for memory, and raises Unavailable with code "no_room" instead.
        """
        if self._closed:
            raise Unavailable("the server is shutting down", code="shutting_down")
        ttl = self._default_ttl if keep_alive is None else keep_alive
        model = self._loaded.get(name)
        holding = model.refcount if model is not None else 0
        if holding + self.waiting(name) >= self._capacity:
            self._metrics.refusals.labels(name, "queue_full").inc()
            raise Overloaded(
                f"{name} has {holding + self.waiting(name)} requests in flight or queued "
                f"(limit {self._capacity}: --num-parallel plus --max-queue); retry later",
                code="queue_full",
                headers={"Retry-After": str(self._retry_after(model))},
            )
        note_model(name)
        started = time.perf_counter()
        if model is not None and self._usable(model):
            self._claim(model, ttl)  # fast path: no lock, no queue
        else:
            model = await self._wait_for_load(name, ttl, evict)
            self._metrics.queue_wait.labels(name).observe(time.perf_counter() - started)
        started = time.perf_counter()
        try:
            yield model
        finally:
            self._release(model, time.perf_counter() - started)

    async def load(self, name: str, keep_alive: float | None = None) -> LoadedModel:
        """Load ``name`` now (POST /api/load); forgets an earlier failure to retry at once."""
        self._loader.failures.pop(name, None)
        async with self.use(name, keep_alive=keep_alive) as model:
            return model

    async def unload(self, name: str) -> bool:
        """Unload ``name`` now if idle, else as soon as its requests finish; False if not loaded."""
        model = self._loaded.get(name)
        if model is None:
            return False
        if model.refcount:
            model.keep_alive = 0.0  # _release unloads it when the last request ends
            return True
        await self._unload(model, "unload requested")
        return True

    def _usable(self, model: LoadedModel) -> bool:
        return model.runner.alive and not model.unloading

    def _claim(self, model: LoadedModel, ttl: float) -> None:
        model.refcount += 1
        model.keep_alive = ttl
        self._expiry.disarm(model)  # reuse resets the expiry: it restarts at refcount zero

    def _release(self, model: LoadedModel, seconds: float) -> None:
        model.refcount -= 1
        model.last_used = self._clock.now()
        model.avg_seconds = (
            seconds if not model.avg_seconds else 0.8 * model.avg_seconds + 0.2 * seconds
        )
        if model.refcount == 0:
            self._arm_expiry(model)
            self._changed.set()
            if self._on_idle is not None and not self.busy():
                self._on_idle()

    def _retry_after(self, model: LoadedModel | None) -> int:
        if model is None or not model.avg_seconds:
            return 1
        waiting = self.queued(model) + 1
        return max(1, math.ceil(model.avg_seconds * waiting / max(self._settings.num_parallel, 1)))

    async def _wait_for_load(self, name: str, ttl: float, evict: bool) -> LoadedModel:
        self._waiting[name] = self.waiting(name) + 1
        try:
            spec = await self._resolve(name)  # 404s and sandbox errors surface here, unqueued
            self._loader.check(name)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[LoadedModel] = loop.create_future()
            # A caller that goes away wakes the loop, which then drops its entry.
            future.add_done_callback(lambda _: self._changed.set())
            deadline = loop.time() + self._settings.queue_timeout
            self._queue.put_nowait(_Pending(spec, ttl, deadline, future, evict))
            self._ensure_loop()
            try:
                return await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled() and future.exception() is None:
                    self._release(future.result(), 0.0)  # granted as the caller left
                future.cancel()
                raise
        finally:
            self._waiting[name] -= 1
            if not self._waiting[name]:
                del self._waiting[name]

    # ------------------------------------------------------------------ the loop

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = detached(self._run(), "vox-scheduler")

    async def _run(self) -> None:
        while True:
            pending = await self._queue.get()
            if pending.future.done():
                continue  # its caller went away while queued
            request_id.set(pending.request_id)
            try:
                model = await self._serve(pending)
            except asyncio.CancelledError:  # stop(): nobody may be left waiting
                if not pending.future.done():
                    pending.future.set_exception(
                        Unavailable("the server is shutting down", code="shutting_down")
                    )
                raise
            except Exception as exc:
                if isinstance(exc, Unavailable) and exc.code == "insufficient_memory":
                    self._metrics.refusals.labels(pending.spec.name, exc.code).inc()
                if not pending.future.done():
                    pending.future.set_exception(exc)
                continue
            if pending.future.done():
                self._arm_expiry(model)  # loaded for nobody: it idles out like any other
            else:
                self._claim(model, pending.keep_alive)
                pending.future.set_result(model)

    async def _serve(self, pending: _Pending) -> LoadedModel:
        spec = pending.spec
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise Unavailable("the server is shutting down", code="shutting_down")
            current = self._loaded.get(spec.name)
            if current is not None and self._usable(current):
                return current  # loaded while this request waited: a shared load
            if current is not None and not current.runner.alive:
                self._count_death(current, current.runner.died)
            self._loader.check(spec.name)
            self._changed.clear()  # before planning, so no change between plan and wait is lost
            need = self._ledger.need_mb(spec)
            pool = self._ledger.pool(spec.pool)
            step = plan(need, pool, self._residents(), self._settings.max_loaded)
            if step.action == "load":
                return await self._load(spec, need)
            if step.action == "never":
                raise Unavailable(
                    f"cannot load {spec.name}: {step.reason}", code="insufficient_memory"
                )
            if not pending.evict:
                why = (
                    step.reason or f"{step.victim.name if step.victim else 'one'} would be evicted"
                )
                raise Unavailable(
                    f"{spec.name} does not fit beside the loaded models ({why})", code="no_room"
                )
            if step.action == "evict":
                await self._evict(step, spec.name)
                continue  # re-plan on fresh measurements
            remaining = pending.deadline - loop.time()
            if remaining <= 0 or pending.future.done():
                raise Unavailable(
                    f"cannot load {spec.name} within {self._settings.queue_timeout:.0f}s: "
                    f"{step.reason}",
                    code="insufficient_memory",
                    headers={"Retry-After": str(self._retry_after_busy())},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _evict(self, step: Plan, wanted: str) -> None:
        assert step.victim is not None
        victim = self._loaded.get(step.victim.name)
        if victim is not None:
            await self._unload(victim, f"evicted (LRU) to make room for {wanted}")

    def _retry_after_busy(self) -> int:
        busy = [m.avg_seconds for m in self._loaded.values() if m.refcount and m.avg_seconds]
        return max(1, math.ceil(min(busy))) if busy else 5

    # ------------------------------------------------------------------ memory

    def _residents(self) -> list[Resident]:
        residents = [
            Resident(m.name, m.pool, m.memory_mb, m.refcount, m.last_used)
            for m in self._loaded.values()
        ]
        residents += [
            Resident(m.name, m.pool, m.memory_mb, 1, m.last_used, evictable=False)
            for m in self._closing.values()
        ]
        return residents

    # ------------------------------------------------------------------ load / unload

    async def _load(self, spec: LoadSpec, need_mb: float) -> LoadedModel:
        try:
            model = await self._loader.load(spec, need_mb, self._default_ttl)
        except LoadError:
            self._metrics.load_failures.labels(spec.name).inc()
            raise
        self._metrics.load_seconds.labels(spec.name).observe(model.load_seconds)
        if spec.name in self._crashed:
            self._crashed.discard(spec.name)
            self._metrics.restarts.labels(spec.name).inc()
        if self._closed:  # shutdown began while this model was loading
            await model.runner.close(grace=1.0)
            raise Unavailable("the server is shutting down", code="shutting_down")
        self._loaded[spec.name] = model
        await self._ledger.measure(model)
        self._spawn_task(self._watch(model))
        if self._sampler is None or self._sampler.done():
            sample = self._ledger.sample(self._loaded, self._clock)
            self._sampler = detached(sample, "vox-memory")
        return model

    async def _watch(self, model: LoadedModel) -> None:
        """Notice a runner's death at once, so ps and the budget stop counting it; kill it
        first if it freezes while busy (the watchdog)."""
        limit = watchdog_s(model.spec.adapter, self._settings.runner_watchdog)
        died = await watch(model.runner, limit, self._clock)
        self._count_death(model, died)

    def _count_death(self, model: LoadedModel, died: RunnerDied | None) -> None:
        """Count a crash once, by whoever sees it first (the watcher or the next request, which
        may find the process gone before its reader has said why: ``died`` None), and drop
        the runner: the next load of its model is then a restart."""
        if self._loaded.get(model.name) is model and not model.unloading:
            log.warning("runner for %s exited: %s", model.name, died or "its process is gone")
            cause = "stalled" if isinstance(died, RunnerStalled) else "exited"
            self._metrics.crashes.labels(model.name, cause).inc()
            self._crashed.add(model.name)
            self._forget(model, "its runner exited")

    def _forget(self, model: LoadedModel, why: str) -> None:
        """Drop a dead runner now; its reaping (already exited, so quick) runs on the side."""
        if self._loaded.get(model.name) is model:
            del self._loaded[model.name]
        self._expiry.disarm(model)
        log.info("dropped %s: %s", model.name, why)
        self._spawn_task(model.runner.close(grace=0.5))
        self._changed.set()

    def _arm_expiry(self, model: LoadedModel) -> None:
        if not model.refcount and not model.unloading and self._loaded.get(model.name) is model:
            self._expiry.arm(model)

    async def _unload(self, model: LoadedModel, why: str) -> None:
        """Mark, stop and reap a runner; its memory counts until it is really free."""
        if model.unloading or self._loaded.get(model.name) is not model:
            return
        model.unloading = True
        self._expiry.disarm(model)
        del self._loaded[model.name]
        self._closing[model.runner.pid] = model
        log.info("unloading %s (pid %d): %s", model.name, model.runner.pid, why)
        self._metrics.unloads.labels(model.name, unload_reason(why)).inc()
        try:
            await model.runner.close()
            await self._ledger.wait_freed(model)
        finally:
            self._closing.pop(model.runner.pid, None)
            self._changed.set()

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = detached(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ shutdown

    async def stop(self, drain: float | None = None) -> None:
        """Refuse new work, let in-flight requests finish (bounded), then reap every runner."""
        self._closed = True
        drain = self._settings.drain_timeout if drain is None else drain
        deadline = time.monotonic() + drain
        while any(m.refcount for m in self._loaded.values()):
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                busy = {m.name: m.refcount for m in self._loaded.values() if m.refcount}
                log.warning("drain timed out with requests in flight: %s", busy)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        for task in (self._loop_task, self._sampler):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(
                    Unavailable("the server is shutting down", code="shutting_down")
                )
        models = [*self._loaded.values(), *self._closing.values()]
        self._loaded.clear()
        for model in models:
            self._expiry.disarm(model)
        await asyncio.gather(*(m.runner.close() for m in models), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

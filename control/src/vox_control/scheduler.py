"""The scheduler: loads runners on demand, reuses loaded ones, reaps them all on shutdown.

Shaped after ollama's server/sched.go: loads are serialized (one at a time), a model that is
already loaded takes a fast path, each request holds a reference for its whole lifetime, and the
seams (spawn, clock) are passed in so tests can use fakes. Memory budgets, keep-alive expiry and
LRU eviction grow out of this in the scheduler issue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from vox_protocol import Load, Loaded, ModelInfo

from vox_control.runner_client import RunnerClient, RunnerDied, RunnerRequestError
from vox_control.settings import Settings

log = logging.getLogger("vox.scheduler")


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


# Resolves a model name to a LoadSpec (store lookup + sandbox ensure); raises for unknown models.
ResolveFn = Callable[[str], Awaitable[LoadSpec]]
SpawnFn = Callable[[LoadSpec], Awaitable[RunnerClient]]


class LoadError(Exception):
    """A runner could not be started or could not load its model."""


@dataclass
class LoadedModel:
    spec: LoadSpec
    runner: RunnerClient
    info: ModelInfo
    loaded_at: float
    last_used: float
    load_seconds: float
    refcount: int = 0

    @property
    def name(self) -> str:
        return self.spec.name


class Scheduler:
    """Owns every runner; hands out loaded models to requests."""

    def __init__(
        self,
        settings: Settings,
        resolve: ResolveFn,
        spawn: SpawnFn,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._resolve = resolve
        self._spawn = spawn
        self._clock = clock
        self._loaded: dict[str, LoadedModel] = {}
        # One load at a time: concurrent first requests for a model share its single load,
        # and two big models never load at once and overshoot memory together.
        self._load_lock = asyncio.Lock()
        self._closed = False

    def loaded(self) -> list[LoadedModel]:
        return sorted(self._loaded.values(), key=lambda m: m.name)

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[LoadedModel]:
        """Hold a reference to a loaded ``name`` for the lifetime of one request."""
        model = await self._get(name)
        model.refcount += 1
        try:
            yield model
        finally:
            model.refcount -= 1
            model.last_used = self._clock()

    async def _get(self, name: str) -> LoadedModel:
        model = self._loaded.get(name)
        if model is not None and model.runner.alive:
            return model  # fast path: no lock taken
        async with self._load_lock:
            if self._closed:
                raise LoadError("the server is shutting down")
            model = self._loaded.get(name)
            if model is not None:
                if model.runner.alive:
                    return model
                # A crashed runner is replaced on the next request that needs it.
                log.warning("runner for %s is gone; starting a new one", name)
                await self._drop(model)
            spec = await self._resolve(name)
            model = await self._load(spec)
            if self._closed:  # shutdown began while this model was loading
                await model.runner.close(grace=1.0)
                raise LoadError("the server is shutting down")
            self._loaded[name] = model
            return model

    async def _load(self, spec: LoadSpec) -> LoadedModel:
        started = self._clock()
        try:
            runner = await self._spawn(spec)
        except (TimeoutError, RunnerDied, RunnerRequestError, OSError) as exc:
            raise LoadError(f"could not start the runner for {spec.name}: {exc}") from exc
        try:
            reply = await asyncio.wait_for(
                runner.request(
                    Load(
                        id=runner.next_id(),
                        model_dir=str(spec.model_dir),
                        device=spec.device,
                        options=spec.options,
                    )
                ),
                self._settings.load_timeout,
            )
        except BaseException as exc:
            await runner.close(grace=1.0)
            if isinstance(exc, RunnerDied | RunnerRequestError | asyncio.TimeoutError):
                raise LoadError(f"could not load {spec.name}: {exc}") from exc
            raise
        if not isinstance(reply, Loaded):
            await runner.close(grace=1.0)
            raise LoadError(f"runner for {spec.name} answered {type(reply).__name__} to load")
        now = self._clock()
        log.info(
            "loaded %s in %.2fs (pid %d, %s, %s)",
            spec.name,
            now - started,
            runner.pid,
            reply.info.device,
            ",".join(reply.info.providers) or "-",
        )
        return LoadedModel(
            spec=spec,
            runner=runner,
            info=reply.info,
            loaded_at=now,
            last_used=now,
            load_seconds=now - started,
        )

    async def unload(self, name: str) -> bool:
        async with self._load_lock:
            model = self._loaded.get(name)
            if model is None:
                return False
            await self._drop(model)
            return True

    async def _drop(self, model: LoadedModel) -> None:
        self._loaded.pop(model.name, None)
        await model.runner.close()

    async def stop(self) -> None:
        """Reap every runner; called from the app's lifespan on shutdown."""
        self._closed = True
        models = list(self._loaded.values())
        self._loaded.clear()
        await asyncio.gather(*(m.runner.close() for m in models), return_exceptions=True)

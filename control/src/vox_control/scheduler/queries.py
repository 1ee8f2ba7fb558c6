"""What the scheduler answers about itself (for /api/ps, readiness and metrics), read-only."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Sequence
from typing import Any

from vox_control.scheduler.budget import Pool
from vox_control.scheduler.expiry import Expiry
from vox_control.scheduler.ledger import Ledger
from vox_control.scheduler.loader import Loader
from vox_control.scheduler.memory import pool_of
from vox_control.scheduler.scheduled import LoadedModel, LoadFailure, Loading, LoadSpec
from vox_control.settings import Settings


class SchedulerQueries:
    """The Scheduler's queries; the state they read is the Scheduler's own."""

    _settings: Settings
    _loaded: dict[str, LoadedModel]
    _waiting: dict[str, int]
    _loader: Loader
    _expiry: Expiry
    _ledger: Ledger

    def loaded(self) -> list[LoadedModel]:
        return sorted(self._loaded.values(), key=lambda m: m.name)

    def loading(self) -> Loading | None:
        return self._loader.loading

    def busy(self) -> bool:
        """Whether a request holds a loaded model, waits for a load, or a load is on."""
        return (
            any(model.refcount for model in list(self._loaded.values()))
            or any(self._waiting.values())
            or self._loader.loading is not None
        )

    def failures(self) -> dict[str, LoadFailure]:
        return self._loader.failed()

    def waiting(self, name: str) -> int:
        return self._waiting.get(name, 0)

    def queued(self, model: LoadedModel) -> int:
        """Requests beyond the runner's parallel slots, plus those waiting for its load."""
        running = min(model.refcount, self._settings.num_parallel)
        return model.refcount - running + self.waiting(model.name)

    def expires_in(self, model: LoadedModel) -> float | None:
        return self._expiry.remaining(model)

    def queue_depths(self) -> dict[str, int]:
        """Requests waiting per model (beyond the running ones, or for a load): for metrics."""
        depths = dict(self._waiting)
        for model in list(self._loaded.values()):
            depths[model.name] = self.queued(model)
        return depths

    def fits_now(self, specs: Sequence[LoadSpec]) -> bool:
        """Whether all of ``specs`` fit beside the loaded models at once, evicting nothing."""
        limit = self._settings.max_loaded
        if limit and len(self._loaded) + len(specs) > limit:
            return False
        for name in {spec.pool for spec in specs}:
            pool = self._ledger.pool(name)
            used = sum(m.memory_mb for m in list(self._loaded.values()) if m.pool == name)
            need = sum(self._ledger.need_mb(spec) for spec in specs if spec.pool == name)
            if need > min(pool.driver_free_mb - pool.headroom_mb, pool.budget_mb - used):
                return False
        return True

    def pools(self) -> list[Pool]:
        """The memory pools this server plans with (the CPU, and its device's), read now."""
        names = {"cpu", *(m.pool for m in list(self._loaded.values()))}
        names.add(pool_of(self._settings.resolved_device))
        return [self._ledger.pool(name) for name in sorted(names)]


def detached(coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]:
    """A task that outlives the request that happened to start it: it starts from an empty
    context, so its log lines do not carry that request's id."""
    return asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())

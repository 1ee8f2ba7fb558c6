"""Keep-alive expiry: one timer per idle model, armed when its last request ends."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

from vox_control.scheduler.budget import FOREVER
from vox_control.scheduler.scheduled import Clock, LoadedModel

UnloadFn = Callable[[LoadedModel, str], Coroutine[Any, Any, None]]


class Expiry:
    """Arms, resets and fires the keep-alive timers; the scheduler decides when to arm."""

    def __init__(
        self, clock: Clock, unload: UnloadFn, spawn: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        self._clock = clock
        self._unload = unload
        self._spawn = spawn

    def remaining(self, model: LoadedModel) -> float | None:
        """Seconds until ``model`` unloads; None while in use or kept forever."""
        if model.expires_at is None:
            return None
        return max(model.expires_at - self._clock.now(), 0.0)

    def disarm(self, model: LoadedModel) -> None:
        model.expires_at = None
        if model.timer is not None:
            model.timer.cancel()
            model.timer = None

    def arm(self, model: LoadedModel) -> None:
        """Start ``model``'s keep-alive from now (it has just become idle)."""
        self.disarm(model)
        if model.keep_alive == FOREVER:
            return
        if model.keep_alive <= 0:
            self._spawn(self._unload(model, "keep_alive 0"))
            return
        model.expires_at = self._clock.now() + model.keep_alive
        # Armed as a request ends, but about no request: no request id on its log lines.
        expire = self._expire_at(model, model.expires_at)
        model.timer = asyncio.get_running_loop().create_task(expire, context=contextvars.Context())

    async def _expire_at(self, model: LoadedModel, deadline: float) -> None:
        await self._clock.sleep_until(deadline)
        ttl = model.keep_alive
        model.timer = None  # this task is ending: unloading must not cancel it
        if model.refcount == 0:
            await self._unload(model, f"idle for {ttl:g}s (keep_alive)")

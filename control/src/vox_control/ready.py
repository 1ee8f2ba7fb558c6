"""Readiness: the store can be read and every --preload model's runner answers a round trip.

Only the models --preload names count; the default models it loads when it names none are a
head start for the first request, not a condition of serving (a request joins their load).

Liveness (/api/health) only says the process serves HTTP. Readiness says requests will be
served: a preloaded model counts once its runner has answered a ping (a ListVoices, which
every runner answers from its event loop, the same loop that sends the watchdog's
heartbeats), and each later probe pings its runner again, so a frozen runner (SIGSTOP, a
deadlock) turns readiness false within PING_S while liveness stays true.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vox_control.scheduler.scheduled import LoadedModel
    from vox_control.services import Services

PING_S = 2.0  # a runner's event loop answers in milliseconds; this is silence, not work


async def ping(model: LoadedModel) -> None:
    """One round trip to ``model``'s runner; raises TimeoutError or a runner error."""
    await asyncio.wait_for(model.runner.voices(), PING_S)


async def not_ready(services: Services) -> str | None:
    """Why the server is not ready, or None when it is."""
    try:
        await asyncio.to_thread(os.listdir, services.store.root)
    except OSError as exc:
        return f"the model store {services.store.root} is not readable: {exc.strerror}"
    for name in services.settings.preload_required:
        if name not in services.answered:
            failed = services.preload_errors.get(name)
            if failed is not None:
                return f"preloading {name} failed: {failed}"
            return f"{name} is still loading (--preload models must answer first)"
    loaded = {m.name: m for m in services.scheduler.loaded()}
    names = [n for n in services.settings.preload_required if n in loaded]
    results = await asyncio.gather(*(ping(loaded[n]) for n in names), return_exceptions=True)
    for name, result in zip(names, results, strict=True):
        if isinstance(result, TimeoutError):
            return f"the runner for {name} did not answer within {PING_S:g}s"
        if isinstance(result, BaseException):
            return f"the runner for {name} did not answer: {result}"
    return None

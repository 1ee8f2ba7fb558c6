"""What `vox serve` loads before anyone asks: the models --preload names, then the defaults.

By default the installed default models (default_stt, default_tts) load in the background as
soon as the server starts, as the Wyoming servers load theirs before they bind: the first
transcription or speech after `vox serve` then finds its runner up instead of paying for an
interpreter, imports and a model load. Ollama loads nothing until asked, but an LLM may be
gigabytes, and Vox's defaults together are about 300 MB. They are a head start, not a promise:
each loads only if it fits beside what is loaded (nothing is evicted and no memory is waited
for), a failure is a log line, and readiness does not wait for them. Models named with
--preload must load, and /api/ready waits for them. Every preloaded model then follows the
keep-alive rules of any other (Ollama's empty preload request does the same): it unloads
after --keep-alive idle, counted from the load; --keep-alive -1 keeps models loaded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from vox_control.errors import Unavailable
from vox_control.ready import ping
from vox_control.runner_client import RunnerClient

if TYPE_CHECKING:
    from vox_control.services import Services

log = logging.getLogger("vox.services")


async def preload_all(services: Services) -> None:
    """Named models first, then the defaults, one at a time: loads share the scheduler's one
    first-come queue, so a request for the model being preloaded would otherwise wait behind
    the next preload too. The runners after the first start at once beside it (interpreter,
    imports, handshake), so each later load begins with its runner up."""
    required, defaults = services.settings.preload_required, services.settings.preload_defaults
    for name in [*required, *(n for n in defaults if services.store.is_installed(n))][1:]:
        services.warm[name] = asyncio.create_task(_start_runner(services, name))
    try:
        for name in required:
            await _preload(services, name)
        for name in defaults:
            await _preload_default(services, name)
    finally:
        await _drop_warm(services)


async def _start_runner(services: Services, name: str) -> RunnerClient:
    return await services.start_runner(await services.load_spec(name))


async def take_warm(services: Services, name: str) -> RunnerClient | None:
    """The runner started ahead for ``name``, if one started and still runs."""
    task = services.warm.pop(name, None)
    if task is None:
        return None
    try:
        runner = await task
    except Exception as exc:  # the load starts a runner afresh and reports what is wrong
        log.debug("the runner started ahead for %s failed: %s", name, exc)
        return None
    return runner if runner.alive else None


async def _drop_warm(services: Services) -> None:
    """Close the runners started ahead that no load took (a model that did not fit)."""
    tasks = list(services.warm.values())
    services.warm.clear()
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, RunnerClient):
            await result.close(grace=1.0)


async def _preload(services: Services, name: str) -> None:
    try:
        await services.puller.wait(name)
        async with services.scheduler.use(name) as model:
            await ping(model)
        services.answered.add(name)
    except Exception as exc:
        services.preload_errors[name] = str(exc) or type(exc).__name__
        log.error("could not preload %s: %s", name, exc)


async def _preload_default(services: Services, name: str) -> None:
    """Load a default model if installed and if it fits; a nicety, so failures only log."""
    await services.puller.wait(name)  # a first start pulls the defaults: load them once there
    if not services.store.is_installed(name):
        return
    try:
        async with services.scheduler.use(name, evict=False):
            pass
    except Unavailable as exc:
        level = logging.INFO if exc.code in ("no_room", "shutting_down") else logging.WARNING
        log.log(level, "not preloading %s: %s", name, exc)
    except Exception as exc:
        log.warning("could not preload %s: %s", name, exc)

"""What `vox serve` loads before anyone asks: the models --preload names, then the defaults.

By default the installed default models (default_tts, then default_stt:
settings.preload_defaults says why) load in the background as soon as the server starts, as the
Wyoming servers load theirs before they bind: the first transcription or speech after
`vox serve` then finds its runner up instead of paying for an interpreter, imports and a model
load. Ollama loads nothing until asked, but an LLM may be gigabytes, and Vox's defaults together
are about 300 MB. They are a head start, not a promise: each loads only if it fits beside what
is loaded (nothing is evicted and no memory is waited for), a failure is a log line, and
readiness does not wait for them. Models named with --preload must load, and /api/ready waits
for them. Every preloaded model then follows the keep-alive rules of any other (Ollama's empty
preload request does the same): it unloads after --keep-alive idle, counted from the load;
--keep-alive -1 keeps models loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from vox_control.errors import Unavailable
from vox_control.ready import ping
from vox_control.runner_client import RunnerClient
from vox_control.scheduler.scheduled import LoadSpec

if TYPE_CHECKING:
    from vox_control.services import Services

log = logging.getLogger("vox.services")

IDLE_WAIT_S = 10.0  # the longest a later preload waits for an idle server before it starts
IDLE_POLL_S = 0.05


async def preload_all(services: Services) -> None:
    """Named models first, then the defaults, one at a time through the scheduler. Their
    runners start ahead (`_start_ahead`); when every preload fits now they load there too, and
    each is handed to the scheduler only once its runner has loaded, so no request waits in
    the scheduler's one queue behind the load of a model it did not ask for."""
    required, defaults = services.settings.preload_required, services.settings.preload_defaults
    try:
        await _start_ahead(services, [*required, *defaults])
        for name in required:
            await _preload(services, name)
        for name in defaults:
            await _preload_default(services, name)
    finally:
        await _drop_warm(services)


async def _start_ahead(services: Services, names: list[str]) -> None:
    """Start the preloads' runners (interpreter, imports, handshake) beside one another.

    When every preload fits beside the loaded models now, each runner loads its model too,
    the first at once and the others once the app is built and the server is idle (or a
    request asks for them: `_idle_or_asked`); the scheduler's own Load of the model then finds
    it loaded (the runner answers at once) and measures it like any other. Otherwise the
    scheduler loads the first itself and the others' runners only start. Not while a pull
    runs: a model being pulled has no files yet. The later runners wait for the app: `vox
    serve` builds it beside the first, and on two cores a third busy process delayed the
    port by 0.3-1 s.
    """
    loaded = {m.name for m in services.scheduler.loaded()}
    names = [n for n in names if services.store.is_installed(n) and n not in loaded]
    if not names or services.puller.in_progress():
        return
    specs = await asyncio.gather(*(services.load_spec(n) for n in names), return_exceptions=True)
    ready = [s for s in specs if isinstance(s, LoadSpec)]
    load = len(ready) == len(specs) and services.scheduler.fits_now(ready)
    loading = services.scheduler.loading()
    ahead = ready if load else ready[1:]  # without loads, the scheduler starts the first
    for spec in ahead:
        if spec.name not in services.warm and (loading is None or loading.spec.name != spec.name):
            at_once = load and spec is ahead[0]
            if not at_once:
                services.warm_asked[spec.name] = asyncio.Event()
            task = _start_runner(services, spec, load, at_once=at_once)
            services.warm[spec.name] = asyncio.create_task(task)


async def _start_runner(
    services: Services, spec: LoadSpec, load: bool, at_once: bool
) -> RunnerClient:
    if not at_once:
        await services.serving.wait()
        await _idle_or_asked(services, spec.name)
    services.warm_asked.pop(spec.name, None)
    started = time.perf_counter()
    runner = await services.start_runner(spec)
    if load:
        model_dir, timeout = str(spec.model_dir), services.settings.load_timeout
        loading = runner.load(model_dir, device=spec.device, options=spec.options)
        try:
            await asyncio.wait_for(loading, timeout)
        except BaseException:
            await runner.close(grace=1.0)
            raise
    runner.ahead_span = (started, time.perf_counter())
    return runner


async def _idle_or_asked(services: Services, name: str) -> None:
    """Wait until the server is idle (no other preload loading ahead, no load in the
    scheduler, no model serving a request), a request asks for ``name``, or IDLE_WAIT_S pass.

    A later preload is a head start for a request that may never come, while the first
    request after a start is usually for a model already loading: on two cores, loading
    the next model beside that request's load and inference slowed its answer by a
    third. A request for ``name`` itself starts it at once (take_warm).
    """
    asked = services.warm_asked.get(name)
    if asked is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IDLE_WAIT_S
    while not _idle(services, name) and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asked.wait(), IDLE_POLL_S)
            return


def _idle(services: Services, name: str) -> bool:
    scheduler = services.scheduler
    waiting = services.warm_asked  # the later preloads, this one among them, wait alike
    ahead = any(not task.done() for other, task in services.warm.items() if other not in waiting)
    return not ahead and not scheduler.busy()


async def _warm_done(services: Services, name: str) -> None:
    """Wait, outside the scheduler's queue, until the runner started ahead for ``name`` has
    loaded (or failed: the scheduler's load then starts afresh and reports why)."""
    task = services.warm.get(name)
    if task is not None:
        await asyncio.wait([task])


async def take_warm(services: Services, name: str) -> RunnerClient | None:
    """The runner started ahead for ``name``, if one started and still runs; one still
    waiting for the server to be idle starts now."""
    asked_at = time.perf_counter()
    asked = services.warm_asked.pop(name, None)
    if asked is not None:
        asked.set()
    task = services.warm.pop(name, None)
    if task is None:
        return None
    try:
        runner = await task
    except Exception as exc:  # the load starts a runner afresh and reports what is wrong
        log.debug("the runner started ahead for %s failed: %s", name, exc)
        return None
    if runner.ahead_span is not None:
        # The loader times the load from its ask (this call), waiting for the task included:
        # only the part of the head start before the ask is the runner's own to add.
        begun, done = runner.ahead_span
        runner.ahead_seconds = max(0.0, min(asked_at, done) - begun)
    return runner if runner.alive else None


async def _drop_warm(services: Services) -> None:
    """Close the runners started ahead that no load took (a model that did not fit)."""
    tasks = list(services.warm.values())
    services.warm.clear()
    services.warm_asked.clear()
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, RunnerClient):
            await result.close(grace=1.0)


async def _preload(services: Services, name: str) -> None:
    try:
        await services.puller.wait(name)
        await _warm_done(services, name)
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
    await _warm_done(services, name)
    try:
        async with services.scheduler.use(name, evict=False):
            pass
    except Unavailable as exc:
        level = logging.INFO if exc.code in ("no_room", "shutting_down") else logging.WARNING
        log.log(level, "not preloading %s: %s", name, exc)
    except Exception as exc:
        log.warning("could not preload %s: %s", name, exc)

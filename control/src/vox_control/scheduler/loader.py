"""Starting one runner for the scheduler: spawn, Load, and the LoadError a failed start becomes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from vox_protocol import ModelInfo

from vox_control.errors import LoadError
from vox_control.runner_client import RunnerClient, RunnerDied, RunnerRequestError
from vox_control.scheduler.scheduled import LoadSpec

log = logging.getLogger("vox.scheduler")

SpawnFn = Callable[[LoadSpec], Awaitable[RunnerClient]]


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
        "loaded %s in %.2fs (pid %d, %s, %s)",
        spec.name,
        time.perf_counter() - started,
        runner.pid,
        reply.info.device,
        ",".join(reply.info.providers) or "-",
    )
    return runner, reply.info

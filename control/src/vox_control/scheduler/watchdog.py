"""The runner watchdog: a busy runner that sends nothing for too long is killed.

A runner says it is alive with a Heartbeat every second while a request is in flight, so
silence means a frozen process (SIGSTOP, a deadlock, a GIL held by a runaway loop), not a long
inference call. Its requests then fail at once with RunnerStalled (504 runner_timeout) instead
of hanging for the request timeout; the scheduler drops the dead runner and starts a fresh one
on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from vox_control.runner_client import RunnerDied
from vox_control.scheduler.scheduled import Clock

log = logging.getLogger("vox.scheduler")

# Seconds of silence allowed per adapter family. Heartbeats come from the runner's event loop,
# so this bounds how long one step may keep that loop from running (an import, a first CUDA
# kernel build in a GPU family's first request), not how long inference may take.
WATCHDOG_FAMILY_S = {
    "faster-whisper": 60.0,
    "parakeet": 60.0,
    "piper": 60.0,
    "kokoro": 60.0,
}
WATCHDOG_DEFAULT_S = 180.0  # GPU and MLX families: slower first steps
_POLL_S = 1.0  # longest between two looks at a runner's silence


class Watched(Protocol):
    """What the watchdog needs of a runner (RunnerClient, or a fake in tests)."""

    def silent_for(self, now: float) -> float | None: ...

    def stall(self, silent_s: float) -> None: ...

    async def wait_dead(self) -> RunnerDied: ...


def watchdog_s(adapter: str, setting: float) -> float:
    """The silence a busy runner is allowed: the setting when positive, else its family's."""
    return setting if setting > 0 else WATCHDOG_FAMILY_S.get(adapter, WATCHDOG_DEFAULT_S)


async def watch(runner: Watched, limit: float, clock: Clock) -> RunnerDied:
    """Return once the runner is dead; kill it first if it stays silent ``limit`` s while busy."""
    dead = asyncio.ensure_future(runner.wait_dead())
    stalled = False
    try:
        while not dead.done():
            silent = runner.silent_for(clock.now())
            if not stalled and silent is not None and silent >= limit:
                log.error("runner sent nothing for %.1fs while busy: killing it", silent)
                runner.stall(silent)
                stalled = True
            # Wake when the silence would reach the limit, and at least every poll: an idle
            # runner that turns busy starts its silence then.
            step = min(_POLL_S, limit - (silent or 0.0)) if silent is not None else _POLL_S
            sleep = asyncio.ensure_future(clock.sleep_until(clock.now() + max(step, 0.01)))
            try:
                await asyncio.wait({dead, sleep}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
        return dead.result()
    finally:
        if not dead.done():
            dead.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dead

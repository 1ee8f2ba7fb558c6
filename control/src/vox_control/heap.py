"""The control plane's freed heap, handed back to the OS once the server has gone idle.

glibc keeps what a request freed (an upload's bytes, decoded and resampled PCM, encoded audio,
response bodies) in its arenas until ``malloc_trim``, and how much it keeps varies. After one
speech and one transcription (2-core VM, 3 starts each): usually 66.5-66.6 MB, and 65.0-65.3 MB
trimmed; but in one series of starts, made beside a running e2e test, 78.0-78.5 MB, and
71.1-71.4 MB trimmed (a CPU hog beside the server did not bring that back; the cause is not
known). A cap on the number of arenas, which the runners need
(vox_runner.memory), gave no more here (70.9-71.0 MB): the control plane's threads allocate
little.

A trim walks every arena (1.5-3.7 ms here), and the next request faults the pages back in, so
it runs once, when the server has been idle for ``TRIM_AFTER_S``, not after every request.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable

log = logging.getLogger("vox.heap")

TRIM_AFTER_S = 1.0


@functools.cache  # looked up at the first trim, not at start
def _glibc_trim() -> Callable[[], None] | None:
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc only; musl and macOS have none
    except (AttributeError, OSError):
        return None
    return lambda: trim(0)


class IdleTrim:
    """Trims the heap once the server has stayed idle ``delay`` seconds after ``idle()``.

    ``busy`` says whether anything runs now (a request holds a model, a load is on): a request
    that began during the delay cancels nothing, so the check is made when the timer fires.
    ``trim`` is a seam for tests; by default glibc's ``malloc_trim``, where there is one.
    """

    def __init__(
        self,
        busy: Callable[[], bool],
        *,
        delay: float = TRIM_AFTER_S,
        trim: Callable[[], None] | None = None,
    ) -> None:
        self._busy = busy
        self._delay = delay
        self._trim = trim
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self.trims = 0

    def idle(self) -> None:
        """The server may have gone idle: trim after ``delay`` unless it is busy by then."""
        if self._timer is not None:
            self._timer.cancel()  # a later idle moment restarts the wait
        loop = asyncio.get_running_loop()
        # No request's context: the trim belongs to none of them.
        self._timer = loop.call_later(self._delay, self._fire, context=contextvars.Context())

    def _fire(self) -> None:
        self._timer = None
        if self._busy():
            return  # the request that made it busy calls idle() again when it ends
        if self._running is not None and not self._running.done():
            return
        trim = self._trim or _glibc_trim()
        if trim is not None:  # None: this C library has no malloc_trim
            self._running = asyncio.get_running_loop().create_task(self._run(trim))

    async def _run(self, trim: Callable[[], None]) -> None:
        # In a thread: malloc_trim takes the arenas' locks while it walks them.
        began = time.perf_counter()
        await asyncio.to_thread(trim)
        self.trims += 1
        log.debug("heap trimmed in %.1f ms", (time.perf_counter() - began) * 1000)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)

"""The scheduler's memory ledger: pools from the probe, estimates, measured peaks, frees."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from vox_control.scheduler.budget import Pool
from vox_control.scheduler.memory import Measurements, MemoryProbe
from vox_control.scheduler.scheduled import Clock, LoadedModel, LoadSpec

log = logging.getLogger("vox.scheduler")

MEASURE_EVERY = 5.0  # seconds between two readings of every loaded runner
GPU_FREE_WAIT = 10.0  # longest wait for a GPU to report an unloaded runner's memory free
DEFAULT_NEED_MB = 512.0  # a model with no estimate and no measurement yet


class Ledger:
    """What each pool has, what a model will need, and what its runner really uses."""

    def __init__(self, probe: MemoryProbe, measurements: Measurements) -> None:
        self.probe = probe
        self.measurements = measurements

    def pool(self, name: str) -> Pool:
        budget, free, headroom = self.probe.pool(name)
        return Pool(name, budget, free, headroom)

    def need_mb(self, spec: LoadSpec) -> float:
        """The remembered peak of an earlier load, else the catalog's estimate."""
        remembered = self.measurements.get(spec.name, spec.pool)
        return remembered or spec.memory_mb or DEFAULT_NEED_MB

    async def measure(self, model: LoadedModel) -> None:
        """Read a runner's use; charge it its peak, never less than an earlier runner's peak.

        A runner just loaded holds less than it will once it serves (inference buffers, arenas),
        so charging only what it holds now would let the next load squeeze in and overcommit.
        The reading (a walk over processes, an NVML call) and the file write run in a thread:
        never on the event loop that serves requests.
        """
        mb = await asyncio.to_thread(self.probe.usage_mb, model.runner.pid, model.pool)
        if mb is None:
            return
        if not model.measured:
            model.floor_mb = self.measurements.get(model.name, model.pool) or 0.0
        model.peak_mb = max(model.peak_mb, mb)
        model.memory_mb = max(model.peak_mb, model.floor_mb)
        model.measured = True
        await asyncio.to_thread(self.measurements.put, model.name, model.pool, model.memory_mb)

    async def sample(self, loaded: Mapping[str, LoadedModel], clock: Clock) -> None:
        """Measure the loaded runners every MEASURE_EVERY s while any is loaded: their peaks
        grow as they serve, and the budget should see that before the next load plans."""
        while loaded:
            await clock.sleep_until(clock.now() + MEASURE_EVERY)
            for model in list(loaded.values()):
                if not model.unloading and model.runner.alive:
                    await self.measure(model)

    async def wait_freed(self, model: LoadedModel) -> None:
        """On a GPU, freed memory shows in the driver a little after the process exits."""
        if model.pool == "cpu":
            return  # the process is reaped: its RSS is gone with it
        deadline = time.monotonic() + GPU_FREE_WAIT
        usage = self.probe.usage_mb
        while await asyncio.to_thread(usage, model.runner.pid, model.pool) is not None:
            if time.monotonic() >= deadline:
                log.warning(
                    "GPU memory of %s (pid %d) not freed after %.0fs",
                    model.name,
                    model.runner.pid,
                    GPU_FREE_WAIT,
                )
                return
            await asyncio.sleep(0.05)

"""Measured memory: runners' RSS through psutil, GPU use per PID through NVML, remembered sizes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import psutil

log = logging.getLogger("vox.memory")

_MB = 1024 * 1024


def pool_of(device: str) -> str:
    """The memory pool a device draws from: "cpu", or "cuda:N" (bare "cuda" is GPU 0)."""
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        return f"cuda:{int(index or 0)}"
    return "cpu"


def _family(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants (a runner's worker processes count as its own)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:  # gone, a zombie, or not ours to see
        return []


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` and its children in MB; None once the process is gone.

    Through psutil, so it works where there is no /proc (macOS, where the MLX adapters run).
    Blocking (it reads every process's status): call it off the event loop.
    """
    total = 0
    seen = False
    for process in _family(pid):
        with contextlib.suppress(psutil.Error):  # a child that exited meanwhile
            total += process.memory_info().rss
            seen = True
    return total / _MB if seen else None


def system_memory_mb() -> tuple[float, float]:
    """(total, available) RAM in MB."""
    memory = psutil.virtual_memory()
    return memory.total / _MB, memory.available / _MB


class GpuProbe(Protocol):
    """NVML, or a fake in tests: one GPU's memory and a process's use of it."""

    def memory_mb(self, index: int) -> tuple[float, float]:
        """(total, free) in MB."""
        ...

    def process_mb(self, index: int, pid: int) -> float | None:
        """What ``pid`` (or its children) holds on the GPU, None when it holds nothing."""
        ...


class NvmlProbe:
    """GPU memory through nvidia-ml-py; only built when ``pynvml`` imports and NVML starts."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml

    @classmethod
    def create(cls) -> NvmlProbe | None:
        try:
            import pynvml  # type: ignore[import-not-found,import-untyped,unused-ignore]

            pynvml.nvmlInit()
        except Exception as exc:  # no package, no driver, no GPU: all mean "no NVML"
            log.debug("NVML unavailable: %s", exc)
            return None
        return cls(pynvml)

    def memory_mb(self, index: int) -> tuple[float, float]:
        handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
        return info.total / _MB, info.free / _MB

    def process_mb(self, index: int, pid: int) -> float | None:
        handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        pids = {process.pid for process in _family(pid)}
        used = 0
        seen = False
        for getter in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            with contextlib.suppress(Exception):
                for process in getattr(self._nvml, getter)(handle):
                    if process.pid in pids and process.usedGpuMemory is not None:
                        used += process.usedGpuMemory
                        seen = True
        return used / _MB if seen else None


class MemoryProbe:
    """The scheduler's one view of memory: pools (budget, driver-free) and runners' use."""

    def __init__(
        self,
        budget: str = "",
        *,
        headroom_mb: float = 256.0,
        gpu: GpuProbe | None = None,
    ) -> None:
        self._budget = budget
        self._headroom = headroom_mb
        self._gpu = gpu

    def pool(self, name: str) -> tuple[float, float, float]:
        """(budget, driver free, headroom) in MB for a pool."""
        from vox_control.scheduler.budget import parse_size_mb

        if name == "cpu":
            total, free = system_memory_mb()
            default = total * 0.75  # leave the rest to the OS and the control plane
        else:
            if self._gpu is None:
                raise RuntimeError(f"no GPU probe for {name} (is nvidia-ml-py installed?)")
            total, free = self._gpu.memory_mb(int(name.partition(":")[2]))
            default = total
        budget = parse_size_mb(self._budget, total) if self._budget else default
        return min(budget, total) if total else budget, free, self._headroom

    def usage_mb(self, pid: int, pool: str) -> float | None:
        """What a runner holds in its pool right now (RSS on CPU, NVML per-PID on a GPU)."""
        if pool == "cpu":
            return rss_mb(pid)
        if self._gpu is None:
            return None
        return self._gpu.process_mb(int(pool.partition(":")[2]), pid)


class Measurements:
    """Remembered peak memory per (model, pool), so the next first load plans with real data."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._data = self._read()

    def _read(self) -> dict[str, float]:
        with contextlib.suppress(OSError, ValueError, TypeError):
            raw = json.loads(self._path.read_text())
            if isinstance(raw, dict):
                return {str(k): float(v) for k, v in raw.items()}
        return {}

    def get(self, name: str, pool: str) -> float | None:
        return self._data.get(f"{name}@{pool}")

    def put(self, name: str, pool: str, mb: float) -> None:
        key = f"{name}@{pool}"
        if self._data.get(key) == round(mb, 1):
            return
        # Another server on the same home may have written other models since: keep theirs.
        self._data = {**self._read(), key: round(mb, 1)}
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".memory-")
            with os.fdopen(fd, "w") as fh:
                json.dump(self._data, fh, indent=1, sort_keys=True)
            os.replace(tmp, self._path)  # readers never see half a file
        except OSError as exc:
            log.warning("could not remember memory use in %s: %s", self._path, exc)

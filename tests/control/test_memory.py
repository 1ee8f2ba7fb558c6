"""Memory probes: RSS from /proc (real and faked), NVML per-PID use through a fake module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from vox_control.scheduler.memory import Measurements, MemoryProbe, NvmlProbe, pool_of, rss_mb


def test_pool_of() -> None:
    assert pool_of("cpu") == "cpu"
    assert pool_of("cuda") == "cuda:0"
    assert pool_of("cuda:1") == "cuda:1"


def test_rss_of_this_process_and_its_children() -> None:
    alone = rss_mb(os.getpid())
    assert alone is not None
    assert alone > 10
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; x = bytearray(80 << 20); time.sleep(30)"]
    )
    try:
        for _ in range(100):
            with_child = rss_mb(os.getpid())
            assert with_child is not None
            if with_child > alone + 60:
                break
            import time

            time.sleep(0.05)
        assert with_child > alone + 60  # the child's 80 MB count for its parent
    finally:
        child.kill()
        child.wait()
    assert rss_mb(2**22 + 12345) is None  # no such process


class _FakeProcess:
    """psutil.Process as macOS answers it: sysctl-backed, no /proc anywhere."""

    def __init__(self, pid: int) -> None:
        if pid != 4242:
            raise psutil.NoSuchProcess(pid)
        self.pid = pid

    def children(self, recursive: bool = False) -> list[Any]:
        return [SimpleNamespace(pid=4243, memory_info=lambda: SimpleNamespace(rss=64 << 20))]

    def memory_info(self) -> Any:
        return SimpleNamespace(rss=192 << 20)


@pytest.fixture
def no_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """A macOS-like host: reading anything under /proc fails; psutil answers from sysctl."""
    real_read, real_iterdir = Path.read_text, Path.iterdir

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if str(self).startswith("/proc"):
            raise FileNotFoundError(self)
        return real_read(self, *args, **kwargs)

    def iterdir(self: Path) -> Any:
        if str(self).startswith("/proc"):
            raise FileNotFoundError(self)
        return real_iterdir(self)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(Path, "iterdir", iterdir)
    memory = SimpleNamespace(total=8 << 30, available=2 << 30)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    monkeypatch.setattr(psutil, "Process", _FakeProcess)


@pytest.mark.usefixtures("no_proc")
def test_a_host_without_proc_gets_a_real_budget_and_runner_sizes() -> None:
    # Before psutil, no /proc meant a 0 MB budget: every load was refused on macOS.
    assert MemoryProbe().pool("cpu") == (6144.0, 2048.0, 256.0)
    assert MemoryProbe("1GB").pool("cpu")[0] == 1024.0
    assert MemoryProbe("50%", headroom_mb=0).pool("cpu") == (4096.0, 2048.0, 0)
    assert MemoryProbe().usage_mb(4242, "cpu") == 256.0  # the runner and its child
    assert MemoryProbe().usage_mb(4244, "cpu") is None  # gone


class FakeNvml:
    """The slice of pynvml the probe calls, for a 16 GB GPU with two processes on it."""

    def __init__(self) -> None:
        self.procs = [SimpleNamespace(pid=41, usedGpuMemory=3 << 30)]

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(total=16 << 30, free=10 << 30)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        return self.procs

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Any]:
        return []


def test_nvml_probe_per_pid_use_and_pool() -> None:
    nvml = FakeNvml()
    gpu = NvmlProbe(nvml)
    assert gpu.memory_mb(0) == (16384.0, 10240.0)
    assert gpu.process_mb(0, 41) == 3072.0
    assert gpu.process_mb(0, 42) is None
    probe = MemoryProbe("12GB", gpu=gpu)
    assert probe.pool("cuda:0") == (12288.0, 10240.0, 256.0)
    assert probe.usage_mb(41, "cuda:0") == 3072.0
    nvml.procs = []  # the runner exited and the driver freed its memory
    assert probe.usage_mb(41, "cuda:0") is None


def test_gpu_pool_without_nvml_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="nvidia-ml-py"):
        MemoryProbe().pool("cuda:0")


def test_measurements_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "memory.json"
    Measurements(path).put("whisper:tiny.en", "cpu", 287.46)
    assert Measurements(path).get("whisper:tiny.en", "cpu") == 287.5
    other = Measurements(path)  # a second server on the same home
    Measurements(path).put("piper:x", "cpu", 200)
    other.put("whisper:tiny.en", "cpu", 300)  # keeps piper's entry written meanwhile
    assert Measurements(path).get("piper:x", "cpu") == 200
    assert Measurements(path).get("whisper:tiny.en", "cpu") == 300
    path.write_text("{not json")
    assert Measurements(path).get("whisper:tiny.en", "cpu") is None

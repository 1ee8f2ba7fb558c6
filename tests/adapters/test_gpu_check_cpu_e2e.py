"""bench/gpu_check.py in its CPU mode (NVML faked by RSS), so the GPU host's script cannot rot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.adapters.tone import REPO

pytestmark = pytest.mark.e2e


def test_gpu_check_passes_in_cpu_mode() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=320,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = out.stdout.split("vox gpu check:", 1)[1]
    for step in ("load two", "memory check:one", "memory check:two", "runner killed", "eviction"):
        assert f"{step}" in table
    assert "FAIL" not in table
    assert "sandboxes built: []" in table  # the host's interpreter, no venv

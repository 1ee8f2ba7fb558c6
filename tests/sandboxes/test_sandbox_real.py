"""The real runner project: a piper sandbox, and what a CUDA piper sandbox would resolve to."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from uv import find_uv_bin
from vox_sandboxes import RunnerSource, SandboxManager, uvcli


@pytest.fixture(scope="module")
def real_source() -> RunnerSource:
    source = RunnerSource.detect()
    if source.runner_project is None:
        pytest.skip("not running from the Vox source tree")
    return source


def test_real_piper_sandbox(real_source: RunnerSource, tmp_path: Path) -> None:
    """Needs PyPI (or a warm uv cache) for piper-tts and onnxruntime; ~2 s when warm."""
    manager = SandboxManager(tmp_path / "sandboxes", real_source)
    lines: list[str] = []

    started = time.monotonic()
    sandbox = manager.ensure("piper", log=lines.append)
    elapsed = time.monotonic() - started

    assert elapsed < 120, lines
    check = "import piper, vox_runner, vox_protocol, onnxruntime; print(vox_runner.__file__)"
    out = subprocess.run(
        [str(sandbox.python), "-I", "-c", check], capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()).is_relative_to(sandbox.path)
    packages = (manager.manifest("piper") or {})["packages"]
    assert "piper-tts==1.8.0" in packages
    assert not any(p.startswith("onnxruntime-gpu") for p in packages)
    assert not any(p.startswith("faster-whisper") for p in packages)  # isolation per adapter


def test_cuda_piper_resolves_onnxruntime_gpu_only(
    real_source: RunnerSource, tmp_path: Path
) -> None:
    """The GPU swap, resolved for real with --dry-run (no GPU needed, nothing installed)."""
    uv = str(find_uv_bin())
    env = uvcli.uv_env(None)
    venv = tmp_path / "venv"
    subprocess.run(uvcli.venv_command(uv, sys.executable, venv), check=True, env=env)
    swaps = uvcli.gpu_swaps("piper", "cuda")
    excludes = tmp_path / "excludes.txt"
    excludes.write_text(uvcli.excludes_text(swaps))
    cmd = uvcli.install_command(uv, venv / "bin" / "python", real_source, "piper", swaps, excludes)

    out = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, env=env, cwd=tmp_path)

    assert out.returncode == 0, out.stderr
    planned = [line.split()[1] for line in out.stderr.splitlines() if line.startswith(" + ")]
    assert any(p.startswith("onnxruntime-gpu==") for p in planned), out.stderr
    assert not any(p.startswith("onnxruntime==") for p in planned), out.stderr
    assert any(p.startswith("piper-tts==") for p in planned)

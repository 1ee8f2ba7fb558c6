"""What a CUDA sandbox resolves to, for real with uv --dry-run (no GPU, nothing installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin
from vox_sandboxes import RunnerSource, uvcli


def planned(adapter: str, device: str, tmp_path: Path) -> list[str]:
    source = RunnerSource.detect()
    if source.runner_project is None:
        pytest.skip("not running from the Vox source tree")
    uv = str(find_uv_bin())
    env = uvcli.uv_env(None)
    venv = tmp_path / "venv"
    subprocess.run(uvcli.venv_command(uv, sys.executable, venv), check=True, env=env)
    swaps = uvcli.gpu_swaps(adapter, device)
    excludes = tmp_path / "excludes.txt"
    excludes.write_text(uvcli.excludes_text(swaps))
    cmd = uvcli.install_command(
        uv,
        venv / "bin" / "python",
        source,
        adapter,
        swaps,
        excludes if any(s.cpu for s in swaps) else None,
    )
    out = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return [line.split()[1] for line in out.stderr.splitlines() if line.startswith(" + ")]


@pytest.mark.parametrize("adapter", ["kokoro", "parakeet"])
def test_cuda_sandbox_gets_onnxruntime_gpu_and_its_cuda_libraries(
    adapter: str, tmp_path: Path
) -> None:
    names = [p.split("==")[0] for p in planned(adapter, "cuda:0", tmp_path)]
    assert "onnxruntime-gpu" in names
    assert "onnxruntime" not in names  # both in one venv overwrite each other
    assert any(n.startswith("nvidia-cudnn") for n in names)
    assert any(n.startswith("nvidia-cublas") for n in names)


def test_cpu_kokoro_sandbox_gets_plain_onnxruntime(tmp_path: Path) -> None:
    names = [p.split("==")[0] for p in planned("kokoro", "cpu", tmp_path)]
    assert "onnxruntime" in names
    assert "onnxruntime-gpu" not in names
    assert "kokoro-onnx" in names


def test_cuda_faster_whisper_sandbox_gets_ctranslate2s_cuda_12_libraries(tmp_path: Path) -> None:
    names = [p.split("==")[0] for p in planned("faster-whisper", "cuda", tmp_path)]
    assert "ctranslate2" in names
    assert "nvidia-cublas-cu12" in names
    assert "nvidia-cudnn-cu12" in names
    assert "onnxruntime" in names  # the Silero VAD, on CPU
    assert "onnxruntime-gpu" not in names  # would bring CUDA 13 beside CTranslate2's CUDA 12

"""The uv command lines, GPU swaps, environment and source detection, without running uv."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import vox_protocol
from vox_sandboxes import ADAPTER_GPU_SWAPS, RunnerSource, SandboxManager, uvcli
from vox_sandboxes.uvcli import excludes_text, gpu_swaps, install_command, venv_command

LOCAL = RunnerSource("/src/protocol", "/src/runners", "f" * 64)
PINNED = RunnerSource.from_requirements("vox-protocol==0.1.0", "vox-runner==0.1.0")


def local_source(tmp_path: Path) -> RunnerSource:
    for name in ("protocol", "runners"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "pyproject.toml").write_text(f'[project]\nname = "vox-{name}"\n')
    return RunnerSource.from_projects(tmp_path / "protocol", tmp_path / "runners")


def test_piper_on_cuda_swaps_onnxruntime_for_onnxruntime_gpu(tmp_path: Path) -> None:
    source = local_source(tmp_path)
    swaps = gpu_swaps("piper", "cuda:0")
    excludes = tmp_path / "excludes.txt"
    cmd = install_command("uv", Path("/sb/bin/python"), source, "piper", swaps, excludes)

    assert excludes_text(swaps) == "onnxruntime\n"
    assert cmd[:6] == ["uv", "pip", "install", "--python", "/sb/bin/python", "--no-sources"]
    assert cmd[cmd.index("--excludes") + 1] == str(excludes)
    assert cmd[-3:] == [source.protocol, f"{source.runner}[piper]", "onnxruntime-gpu>=1.20,<2"]
    assert not any(arg.startswith("onnxruntime==") or arg == "onnxruntime" for arg in cmd)


def test_local_dirs_are_refreshed_and_never_editable(tmp_path: Path) -> None:
    source = local_source(tmp_path)
    cmd = install_command("uv", Path("/sb/bin/python"), source, "piper")
    refreshed = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--refresh-package"]
    assert refreshed == ["vox-protocol", "vox-runner"]
    assert "-e" not in cmd
    assert "--editable" not in cmd


def test_faster_whisper_on_cuda_adds_cuda_12_libraries_and_keeps_onnxruntime() -> None:
    swaps = gpu_swaps("faster-whisper", "cuda:1")
    assert {s.gpu.split(">")[0] for s in swaps} == {"nvidia-cublas-cu12", "nvidia-cudnn-cu12"}
    cmd = install_command("uv", Path("/sb/bin/python"), PINNED, "faster-whisper", swaps)
    assert "--excludes" not in cmd  # nothing to exclude: only additions
    assert not any("onnxruntime-gpu" in arg for arg in cmd)
    assert excludes_text(swaps) == ""


@pytest.mark.parametrize(("adapter", "device"), [("piper", "cpu"), ("faster-whisper", "cpu")])
def test_no_swap_off_gpu(adapter: str, device: str) -> None:
    assert gpu_swaps(adapter, device) == ()
    cmd = install_command("uv", Path("/sb/bin/python"), PINNED, adapter)
    assert "--excludes" not in cmd
    assert not any("onnxruntime-gpu" in arg for arg in cmd)


def test_swaps_need_an_excludes_file() -> None:
    with pytest.raises(ValueError, match="excludes"):
        install_command("uv", Path("/p"), PINNED, "piper", gpu_swaps("piper", "cuda"))


def test_every_swap_table_entry_is_well_formed() -> None:
    for adapter, swaps in ADAPTER_GPU_SWAPS.items():
        assert adapter == adapter.lower()
        for swap in swaps:
            assert swap.gpu.startswith(f"{swap.cpu}-gpu" if swap.cpu else "nvidia-")


def test_pinned_requirements_get_the_extra_after_the_name() -> None:
    cmd = install_command("uv", Path("/p"), PINNED, "faster-whisper")
    assert cmd[-2:] == ["vox-protocol==0.1.0", "vox-runner[faster-whisper]==0.1.0"]
    assert "--refresh-package" not in cmd  # index packages: the normal cache rules are right


def test_venv_is_relocatable_with_the_given_python() -> None:
    cmd = venv_command("uv", "/usr/bin/python3.11", Path("/root/.x.staging"))
    assert cmd[:2] == ["uv", "venv"]
    assert "--relocatable" in cmd
    assert cmd[cmd.index("--python") + 1] == "/usr/bin/python3.11"
    assert cmd[-1] == "/root/.x.staging"


def test_python_downloads_stay_off_whatever_the_caller_passes() -> None:
    env = uvcli.uv_env({"UV_PYTHON_DOWNLOADS": "automatic", "UV_INDEX_URL": "http://mirror"})
    assert env["UV_PYTHON_DOWNLOADS"] == "never"
    assert env["UV_INDEX_URL"] == "http://mirror"


def test_device_flavor_is_in_the_fingerprint_only_where_it_matters(tmp_path: Path) -> None:
    source = local_source(tmp_path)
    cpu = SandboxManager(tmp_path / "sb", source, device="cpu")
    gpu = SandboxManager(tmp_path / "sb", source, device="cuda:1")
    assert cpu.fingerprint("piper") != gpu.fingerprint("piper")
    assert cpu.fingerprint("faster-whisper") != gpu.fingerprint("faster-whisper")  # + cuDNN
    assert cpu.fingerprint("sesame") == gpu.fingerprint("sesame")  # no swaps: one venv
    assert cpu.fingerprint("piper") != cpu.fingerprint("faster-whisper")


def test_detect_finds_the_workspace_projects() -> None:
    source = RunnerSource.detect()
    init = vox_protocol.__file__
    assert init is not None
    protocol_dir = Path(init).resolve().parents[2]
    assert source.protocol == str(protocol_dir)
    assert source.runner == str(protocol_dir.parent / "runners")
    assert source.adapters() is not None
    assert {"faster-whisper", "piper"} <= set(source.adapters() or {})
    assert RunnerSource.detect().fingerprint == source.fingerprint


def test_detect_falls_back_to_pinned_requirements(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_site = tmp_path / "lib" / "python3.11" / "site-packages" / "vox_protocol"
    monkeypatch.setattr(vox_protocol, "__file__", str(fake_site / "__init__.py"))
    source = RunnerSource.detect()
    version = importlib.metadata.version("vox-protocol")
    assert source.protocol == f"vox-protocol=={version}"
    assert source.runner.startswith("vox-runner==")
    assert source == RunnerSource.from_requirements(source.protocol, source.runner)
    assert source.runner_project is None

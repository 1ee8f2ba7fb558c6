"""The uv command lines vox_sandboxes runs, and a runner that streams their output."""

from __future__ import annotations

import os
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vox_sandboxes.errors import SandboxError, uv_failed
from vox_sandboxes.package import AdapterPackage
from vox_sandboxes.source import PROTOCOL_NAME, RUNNER_NAME, RunnerSource

STDERR_TAIL_LINES = 20
MISSING_EXTRA_MARKER = "does not have an extra named"


@dataclass(frozen=True)
class GpuSwap:
    """On a CUDA device, resolve `gpu` in place of `cpu` (excluded, so never both)."""

    cpu: str | None  # package name excluded from resolution; None: `gpu` is only added
    gpu: str  # requirement added in its place


# onnxruntime and onnxruntime-gpu ship the same `onnxruntime` import package, so installing both
# makes one overwrite the other's files. faster-whisper keeps plain onnxruntime: it uses it only
# for the Silero VAD on CPU, and onnxruntime-gpu (CUDA 13) would drag a second CUDA runtime next
# to CTranslate2's CUDA 12. What CTranslate2 needs instead is cuBLAS 12 and cuDNN 9, which its
# wheel does not bring (faster-whisper's README: "pip install nvidia-cublas-cu12
# nvidia-cudnn-cu12==9.*"); the adapter preloads them from the sandbox.
ADAPTER_GPU_SWAPS: Mapping[str, tuple[GpuSwap, ...]] = {
    "faster-whisper": (
        GpuSwap(None, "nvidia-cublas-cu12>=12.4,<13"),
        GpuSwap(None, "nvidia-cudnn-cu12>=9.1,<10"),
    ),
    "piper": (GpuSwap("onnxruntime", "onnxruntime-gpu>=1.20,<2"),),
    # The [cuda,cudnn] extras bring the CUDA 13 and cuDNN 9 wheels onnxruntime-gpu links
    # against; the adapters preload them (onnxruntime.preload_dlls), so no system CUDA is needed.
    "kokoro": (GpuSwap("onnxruntime", "onnxruntime-gpu[cuda,cudnn]>=1.20,<2"),),
    "parakeet": (GpuSwap("onnxruntime", "onnxruntime-gpu[cuda,cudnn]>=1.20,<2"),),
}


def device_flavor(device: str) -> str:
    """'cuda' for any 'cuda' / 'cuda:N' device, else 'cpu'."""
    return "cuda" if device.lower().startswith("cuda") else "cpu"


def gpu_swaps(adapter: str, device: str) -> tuple[GpuSwap, ...]:
    """The swaps that apply to this adapter on this device (none on CPU)."""
    return ADAPTER_GPU_SWAPS.get(adapter, ()) if device_flavor(device) == "cuda" else ()


def venv_command(uv: str, python: str, target: Path) -> list[str]:
    """Create a venv that keeps working after being renamed (the staging-dir swap needs that)."""
    # --quiet: its only output is "Activate with: ..." advice naming the staging dir.
    return [uv, "venv", "--quiet", "--relocatable", "--no-config", "--python", python, str(target)]


def install_command(
    uv: str,
    target_python: Path,
    source: RunnerSource,
    adapter: str,
    swaps: Sequence[GpuSwap] = (),
    excludes_file: Path | None = None,
    package: AdapterPackage | None = None,
) -> list[str]:
    """`uv pip install` of the protocol and `runner[adapter]`, plus any GPU swaps.

    With a third-party ``package`` the runner comes bare (no extra of that name exists) and
    the package brings the adapter and its dependencies.
    """
    # --no-sources: a runner dir inside the uv workspace would otherwise pick up the workspace's
    # `vox-protocol = { workspace = true }` source and install the protocol *editable*, pointing
    # the sandbox back at the live source tree instead of holding a copy.
    cmd = [uv, "pip", "install", "--python", str(target_python), "--no-sources"]
    for name, project in (
        (PROTOCOL_NAME, source.protocol_project),
        (RUNNER_NAME, source.runner_project),
    ):
        if project is not None:
            # uv rebuilds directories named on the command line today, but its cache key for a
            # directory is only pyproject.toml's mtime; be explicit that a wheel built earlier
            # from this dir must not be reused, since the sandbox must hold exactly this source.
            cmd += ["--refresh-package", name]
    if package is not None and package.kind == "project":
        cmd += ["--refresh-package", package.name]
    if any(swap.cpu for swap in swaps):
        if excludes_file is None:
            raise ValueError("GPU swaps need an excludes file")
        cmd += ["--excludes", str(excludes_file)]
    runner = runner_requirement(source, adapter if package is None else None)
    cmd += [source.protocol, runner]
    if package is not None:
        cmd.append(package.spec)
    cmd += [swap.gpu for swap in swaps]
    return cmd


def runner_requirement(source: RunnerSource, adapter: str | None) -> str:
    """`<dir>[adapter]` for a local project, `vox-runner[adapter]==X` for a requirement;
    without an ``adapter``, the bare runner."""
    extra = f"[{adapter}]" if adapter is not None else ""
    if source.runner_project is not None:
        return f"{source.runner}{extra}"
    if (wheel := source.runner_wheel) is not None:
        return f"{RUNNER_NAME}{extra} @ {wheel.resolve().as_uri()}"
    # Extras go right after the name: "vox-runner==0.1.0[piper]" is not a valid requirement.
    # packaging's grammar compiles ~40 regexes on import (~20 ms): only a build needs it.
    from packaging.requirements import Requirement

    req = Requirement(source.runner)
    if adapter is not None:
        req.extras = {*req.extras, adapter}
    return str(req)


def excludes_text(swaps: Sequence[GpuSwap]) -> str:
    """The requirements-file body for `--excludes`."""
    return "".join(f"{swap.cpu}\n" for swap in swaps if swap.cpu)


def freeze_command(uv: str, target_python: Path) -> list[str]:
    return [uv, "pip", "freeze", "--python", str(target_python)]


def uv_env(extra_env: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra_env or {})
    # Set last so no caller can re-enable it: a sandbox must use the control plane's Python,
    # never one uv fetched from the internet.
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["NO_COLOR"] = "1"
    return env


def run_uv(
    cmd: Sequence[str],
    *,
    adapter: str,
    env: Mapping[str, str],
    cwd: Path,
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """Run uv, forwarding each output line to `log`; return all lines, or raise SandboxError."""
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    try:
        # stderr is where uv reports progress and errors; merged so that `log` sees them in order.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=dict(env),
            cwd=cwd,
        )
    except OSError as exc:
        msg = f"could not create the sandbox for {adapter}: cannot run uv: {exc}"
        raise SandboxError(msg) from exc
    with proc:
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                lines.append(line)
                tail.append(line)
                if log is not None:
                    log(line)
        except BaseException:
            proc.kill()
            raise
    if proc.returncode != 0:
        raise uv_failed(adapter, "uv", proc.returncode, "\n".join(tail))
    return lines


def uv_version(uv: str) -> str:
    try:
        out = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SandboxError(f"cannot run uv at {uv}: {exc}") from exc
    return out.stdout.strip()


def uv_freeze(
    uv: str, target_python: Path, *, adapter: str, env: Mapping[str, str], cwd: Path
) -> list[str]:
    """`uv pip freeze` of a venv: its stdout only (uv writes an 'Using Python' note to stderr)."""
    cmd = freeze_command(uv, target_python)
    prefix = f"could not create the sandbox for {adapter}"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=dict(env), cwd=cwd)
    except OSError as exc:
        raise SandboxError(f"{prefix}: cannot run uv: {exc}") from exc
    if out.returncode != 0:
        tail = "\n".join(out.stderr.splitlines()[-STDERR_TAIL_LINES:])
        raise uv_failed(adapter, "uv pip freeze", out.returncode, tail)
    return [line for line in out.stdout.splitlines() if line.strip()]

"""Model-family rules the control plane applies before any runner: GPU-only pulls, voice blends
and voices read straight from a model's voice file."""

from __future__ import annotations

import zipfile
from pathlib import Path

from vox_protocol import is_blend, parse_blend

from vox_control.errors import BadRequest, Unprocessable
from vox_control.store.registry import CatalogEntry


class NeedsGpu(Unprocessable):
    """A GPU-only model asked of a server without a CUDA device."""


def check_device(entry: CatalogEntry, device: str) -> None:
    """Refuse a GPU-only model on a CPU device, before anything is downloaded or started."""
    if entry.gpu_only and not device.lower().startswith("cuda"):
        size = f"{entry.size_bytes / 1e9:.1f} GB of weights, " if entry.size_bytes else ""
        raise NeedsGpu(
            f"{entry.name} runs only on a CUDA GPU ({size}about {entry.memory_mb} MB of GPU "
            f"memory) and this server's device is {device}; nothing was downloaded. Start "
            "`vox serve --device cuda` on a machine with an NVIDIA GPU to use it.",
            param="model",
        )


def blend_voices(voice: str) -> list[str] | None:
    """The voice ids of a blend ``a+b`` or ``a*0.7+b*0.3``; None when ``voice`` is no blend."""
    if not is_blend(voice):
        return None
    try:
        return [vid for vid, _ in parse_blend(voice)]
    except ValueError as exc:
        raise BadRequest(str(exc), param="voice") from None


def npz_voices(model_dir: Path) -> list[str] | None:
    """Voice ids in a model's voices npz (its member names), read without numpy or a runner.

    kokoro-onnx's voice files are plain zips of ``<id>.npy`` members; None when the model
    has no such file.
    """
    candidates = [model_dir / "voices.npz", model_dir / "voices-v1.0.bin"]
    candidates += sorted(model_dir.glob("*.npz"))
    for path in candidates:
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
            return names or None
    folder = model_dir / "voices"
    if folder.is_dir():
        return sorted(p.stem for p in folder.glob("*.bin")) or None
    return None

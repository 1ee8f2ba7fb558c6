"""onnxruntime sessions on the requested device, reporting the providers really obtained."""

from __future__ import annotations

import logging
from typing import Any

from vox_runner.adapter import parse_device

log = logging.getLogger("vox_runner.adapters.ort")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def providers_for(device: str, available: list[str]) -> list[Any]:
    """The provider list to ask onnxruntime for: CUDA first (with its device id) when wanted.

    ``available`` is ``get_available_providers()``, which lists CUDA whenever onnxruntime-gpu
    is installed, GPU or not: it only decides whether asking for CUDA makes sense at all.
    """
    kind, index = parse_device(device)
    if kind == "cpu" or CUDA not in available:
        return [CPU]
    _preload_cuda()
    return [(CUDA, {"device_id": index}), CPU]


def _preload_cuda() -> None:
    """Load the CUDA/cuDNN libraries pip installed (onnxruntime-gpu[cuda,cudnn]) by path:
    they are not on the loader's search path, and without them CUDA silently falls back."""
    try:
        import onnxruntime

        preload = getattr(onnxruntime, "preload_dlls", None)
        if preload is not None:
            preload()
    except Exception:  # no such libraries: the session reports the CPU fallback
        log.debug("preloading CUDA libraries failed", exc_info=True)


def session_options(threads: int = 0) -> Any:
    """Options for the sessions of Vox's adapters, whose input shapes change with every call.

    No memory pattern: onnxruntime plans and keeps one allocation pattern per input shape,
    which pays off only when shapes repeat. Without it a piper runner held 238 MB instead of
    262 after twelve sentences, and synthesized them as fast (4.37 s against 4.48, medians
    of 4 alternated runs).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    if threads > 0:
        options.intra_op_num_threads = threads
    return options


def checked_providers(session: Any, device: str) -> list[str]:
    """The providers the session really runs on; a CUDA request that fell back is warned about."""
    got = [str(p) for p in session.get_providers()]
    wanted_cuda = parse_device(device)[0] == "cuda"
    if wanted_cuda and CUDA not in got:
        log.warning("device %s requested but onnxruntime runs on %s (CPU fallback)", device, got)
    return got


def device_name(providers: list[str], device: str) -> str:
    """``cuda:N`` when the session has the CUDA provider, else ``cpu``."""
    if CUDA in providers:
        kind, index = parse_device(device)
        return f"cuda:{index}" if kind != "auto" or index else "cuda:0"
    return "cpu"

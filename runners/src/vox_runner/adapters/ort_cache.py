"""CPU onnxruntime sessions from a cache of optimized graphs: a load reads the graph that an
earlier load optimized instead of optimizing it again.

onnxruntime optimizes a graph every time it builds a session (constant folding, fusions, the
CPU's own layouts). For the piper joe voice that was 0.38-0.56 s of a 0.66 s load, on the way
to a server's first speech and beside the other default model's load on a small machine; the
optimized graph read back with optimizations off builds in 0.16 s and computes the same
samples. The saved graph may use the optimizer's CPU-specific layouts, so it is keyed by the
model file (path, size, mtime, inode), the onnxruntime version, the optimization level and
the CPU (machine and feature flags), and kept under the runner's cache dir
(``--cache-dir``, ``<VOX_HOME>/cache`` under `vox serve`): one entry per model file, the
stale ones dropped when a new one is written. No cache dir, a GPU provider, a model over
1 GiB (a graph that size would need its weights written apart) or a cache that cannot be
read or written: the session is built as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from vox_runner.adapter import cache_dir

log = logging.getLogger("vox_runner.adapters.ort_cache")

CPU = "CPUExecutionProvider"
_MAX_MODEL_BYTES = 1 << 30
_SUFFIX = ".onnx"
_STALE_TMP_S = 3600.0


def session(model_path: Path, options: Any, providers: list[Any]) -> Any:
    """``InferenceSession(model_path, options, providers)``, from the cache where it can be."""
    import onnxruntime

    root = cache_dir("onnx") if providers == [CPU] else None
    entry = _entry(root, model_path, options) if root is not None else None
    if entry is None:
        return onnxruntime.InferenceSession(str(model_path), options, providers=providers)
    level = options.graph_optimization_level
    if entry.is_file():
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return onnxruntime.InferenceSession(str(entry), options, providers=providers)
        except Exception as exc:  # a damaged entry: optimize afresh and replace it
            log.warning("dropping the cached graph %s: %s", entry.name, exc)
            entry.unlink(missing_ok=True)
            options.graph_optimization_level = level
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    options.optimized_model_filepath = str(tmp)
    # Saving warns that the graph "should only be used in the same environment": the entry's
    # key holds the CPU's flags, so errors only, for this one build.
    severity, options.log_severity_level = options.log_severity_level, 3
    try:
        made = onnxruntime.InferenceSession(str(model_path), options, providers=providers)
    finally:
        options.optimized_model_filepath = ""
        options.log_severity_level = severity
    _keep(tmp, entry, model_path)
    return made


def _entry(root: Path, model_path: Path, options: Any) -> Path | None:
    """Where the optimized graph of ``model_path`` under ``options`` is cached, or None."""
    try:
        st = model_path.stat()
    except OSError:
        return None
    if st.st_size > _MAX_MODEL_BYTES:
        return None
    import onnxruntime

    state = {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
        "onnxruntime": onnxruntime.__version__,
        "level": int(options.graph_optimization_level),
        "cpu": _cpu(),
    }
    digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
    return root / f"{_model_key(model_path)}-{digest}{_SUFFIX}"


def _model_key(model_path: Path) -> str:
    return hashlib.sha256(str(model_path.resolve()).encode()).hexdigest()[:16]


def _cpu() -> str:
    """The machine and its feature flags: the optimizer picks layouts (AVX2, AVX-512) by them."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    flags = line.partition(":")[2].strip()
                    break
    except OSError:
        flags = platform.processor()
    return f"{platform.machine()} {flags}"


def _keep(tmp: Path, entry: Path, model_path: Path) -> None:
    """Move the freshly optimized graph into place; drop the model's and the gone models'
    older entries. A failure only costs the next load its optimization."""
    try:
        if not tmp.is_file():
            return  # onnxruntime wrote nothing (an optimizer that could not save this graph)
        os.replace(tmp, entry)
        source = entry.with_name(f"{entry.name.partition('-')[0]}.json")  # the model's key
        source.write_text(json.dumps({"model": str(model_path.resolve())}))
        _prune(entry.parent, keep=entry)
    except OSError as exc:
        log.warning("could not cache the optimized graph of %s: %s", model_path.name, exc)
        tmp.unlink(missing_ok=True)


def _prune(root: Path, keep: Path) -> None:
    own = keep.name.partition("-")[0]
    for graph in root.glob(f"*{_SUFFIX}"):
        key = graph.name.partition("-")[0]
        source = root / f"{key}.json"
        try:
            model: Path | None = Path(json.loads(source.read_text())["model"])
        except (OSError, ValueError, KeyError, TypeError):
            model = None
        gone = model is None or not model.exists()
        if (key == own and graph != keep) or gone:
            graph.unlink(missing_ok=True)
        if gone and key != own:
            source.unlink(missing_ok=True)
    for tmp in root.glob(".*.tmp"):  # left by a runner killed while it wrote
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > _STALE_TMP_S:
                tmp.unlink()

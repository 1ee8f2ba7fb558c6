"""In-process baseline worker for bench/overhead.py: run by a sandbox's python, JSON lines on stdio.

Usage: ``<sandbox>/bin/python bench/inprocess.py whisper|piper MODEL_DIR``. It loads the model
once, prints ``{"ready": ...}``, then answers one JSON line per command read on stdin:

- ``{"op": "transcribe", "path": WAV}`` -> ``{"seconds", "text", "duration", "cpu_s"}``
- ``{"op": "synthesize", "text": TEXT}`` -> ``{"seconds", "first_audio_s", "audio_bytes", ...}``

``seconds`` is wall time around the library call; ``cpu_s`` the process's CPU time for it.

Only the standard library and the adapter's own package are imported, so it runs in a sandbox.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def private_stdout() -> TextIO:
    """Keep the JSON stream for ourselves: native code printing to fd 1 lands on stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def whisper_handler(model_dir: Path) -> tuple[Handler, dict[str, Any]]:
    """The runner's settings: CPU, int8, default threads, beam 5, no VAD, no word timestamps."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", local_files_only=True)

    def transcribe(command: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        segments, info = model.transcribe(command["path"], beam_size=5)
        text = "".join(segment.text for segment in segments).strip()
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "text": text, "duration": info.duration}

    versions = {p: metadata.version(p) for p in ("faster-whisper", "ctranslate2")}
    return transcribe, {"versions": versions, "compute_type": str(model.model.compute_type)}


def piper_handler(model_dir: Path) -> tuple[Handler, dict[str, Any]]:
    """``PiperVoice.load`` and ``voice.synthesize(text)``: piper 1.8 yields one chunk a sentence."""
    from piper import PiperVoice

    onnx = next(model_dir.glob("*.onnx"))
    voice = PiperVoice.load(onnx, config_path=onnx.with_name(onnx.name + ".json"))

    def synthesize(command: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        first: float | None = None
        audio_bytes = 0
        chunks = 0
        for chunk in voice.synthesize(command["text"]):
            audio_bytes += len(chunk.audio_int16_bytes)
            chunks += 1
            if first is None:
                first = time.perf_counter() - started
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "first_audio_s": first,
            "audio_bytes": audio_bytes,
            "chunks": chunks,
            "sample_rate": voice.config.sample_rate,
        }

    versions = {p: metadata.version(p) for p in ("piper-tts", "onnxruntime")}
    return synthesize, {"versions": versions}


def serve(handler: Handler, out: TextIO) -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        cpu = time.process_time()
        try:
            reply = handler(command)
            reply["cpu_s"] = time.process_time() - cpu  # every thread of this process
        except Exception as exc:  # report and keep serving: the parent decides what to do
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("whisper", "piper"):
        raise SystemExit("usage: inprocess.py whisper|piper MODEL_DIR")
    out = private_stdout()
    started = time.perf_counter()
    factory = whisper_handler if argv[0] == "whisper" else piper_handler
    handler, info = factory(Path(argv[1]))
    ready = {"ready": True, "load_s": time.perf_counter() - started, **info}
    out.write(json.dumps(ready) + "\n")
    serve(handler, out)


if __name__ == "__main__":
    main(sys.argv[1:])

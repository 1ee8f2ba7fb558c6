"""In-process baseline worker for bench/overhead.py: run by a sandbox's python, JSON lines on stdio.

Usage: ``<sandbox>/bin/python bench/inprocess.py whisper|piper MODEL_DIR``. It loads the model
once, prints ``{"ready": ...}``, then answers one JSON line per command read on stdin:

- ``{"op": "transcribe", "path": WAV}`` -> ``{"seconds", "text", "duration", "cpu_s"}``
- ``{"op": "batch", "paths": [WAV, ...], "mode": "sequential"|"batched"}``
  -> ``{"seconds", "texts"}``
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

    batched = _cross_request_batch(model)

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        if command.get("op") != "batch":
            return transcribe(command)
        # Several requests at once: one after another (what the runner does today), or their
        # features stacked into one encoder and one beam-search call (what batching would do).
        started = time.perf_counter()
        if command["mode"] == "batched":
            texts = batched(command["paths"])
        else:
            texts = [transcribe({"path": path})["text"] for path in command["paths"]]
        return {"seconds": time.perf_counter() - started, "texts": texts}

    versions = {p: metadata.version(p) for p in ("faster-whisper", "ctranslate2")}
    return handle, {"versions": versions, "compute_type": str(model.model.compute_type)}


def _cross_request_batch(model: Any) -> Callable[[list[str]], list[str]]:
    """Clips of at most 30 s, each padded to one window, decoded in one batch (beam 5, English,
    no timestamps' effect on the text): faster-whisper's batched pipeline, fed whole requests
    instead of one request's VAD chunks."""
    import numpy as np
    from faster_whisper import decode_audio
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import (
        BatchedInferencePipeline,
        TranscriptionOptions,
        get_suppressed_tokens,
    )

    pipeline = BatchedInferencePipeline(model)
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, "transcribe", "en")
    options = TranscriptionOptions(
        beam_size=5, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
        no_repeat_ngram_size=0, log_prob_threshold=-1.0, no_speech_threshold=0.6,
        compression_ratio_threshold=2.4, temperatures=[0.0], initial_prompt=None, prefix=None,
        suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        prepend_punctuations="", append_punctuations="", max_new_tokens=None, hotwords=None,
        word_timestamps=False, hallucination_silence_threshold=None,
        condition_on_previous_text=False, clip_timestamps=[], prompt_reset_on_temperature=0.5,
        multilingual=False, without_timestamps=False, max_initial_timestamp=0.0,
    )  # fmt: skip

    def run(paths: list[str]) -> list[str]:
        features = np.stack(
            [pad_or_trim(model.feature_extractor(decode_audio(path))) for path in paths]
        )
        _, outputs = pipeline.generate_segment_batched(features, tokenizer, options)
        return [
            tokenizer.decode([t for t in out["tokens"] if t < tokenizer.eot]).strip()
            for out in outputs
        ]

    return run


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

"""Streaming benchmark: TTS time to first audio over the WS vs in-process piper, STT throughput.

Usage: ``uv run python bench/streaming.py [--home DIR] [--runs N]``. Starts ``vox serve`` on a
free loopback port (``--home`` reuses a home whose models are pulled; default a fresh one that
pulls them), then measures:

- TTS: time from sending a 1,000-character text over ``/v1/audio/speech/stream`` to the first
  binary audio frame, against piper's own ``voice.synthesize(text)`` first chunk in the
  adapter's sandbox interpreter (same model, warmed up). Goal: at most 1.05x.
- STT: audio seconds per wall second for the ~3-minute recording streamed as pcm16 over
  ``/v1/audio/transcriptions/stream`` (30 s windows, 1 s overlap, sent as fast as possible),
  against ``POST /api/transcribe`` on the same audio. Goal: at least 0.9x.

Prints a table and writes JSON to bench/results/streaming-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import VoxServer  # noqa: E402
from tests.streaming.helpers import SCRIPT, make_recording  # noqa: E402

STT, TTS = "whisper:tiny.en", "piper:en-us-joe-medium"

INPROCESS = r"""
import json, sys, time
from pathlib import Path
from piper import PiperVoice
model_dir, text, runs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
onnx = next(model_dir.glob("*.onnx"))
voice = PiperVoice.load(onnx, config_path=onnx.with_name(onnx.name + ".json"))
for _ in voice.synthesize("Hello."):
    pass
out = []
for _ in range(runs):
    started = time.perf_counter()
    chunks = voice.synthesize(text)
    next(iter(chunks))
    out.append(time.perf_counter() - started)
    for _ in chunks:
        pass
print(json.dumps(out))
"""


def text_of(chars: int) -> str:
    text = ""
    for sentence in SCRIPT * 4:
        if len(text) + len(sentence) + 1 > chars:
            break
        text = f"{text} {sentence}".strip()
    return text


def ws_first_audio(url: str, text: str) -> tuple[float, float]:
    """(seconds to the first audio frame, seconds to done) after the text is sent."""
    with connect(url + "/v1/audio/speech/stream", max_size=None) as ws:
        ws.send(json.dumps({"type": "config", "model": TTS}))
        json.loads(ws.recv())
        started = time.perf_counter()
        ws.send(json.dumps({"type": "text", "text": text}))
        ws.send(json.dumps({"type": "end"}))
        first = 0.0
        while True:
            message = ws.recv()
            if isinstance(message, bytes):
                first = first or time.perf_counter() - started
            elif json.loads(message)["type"] == "done":
                return first, time.perf_counter() - started


def ws_transcribe_events(
    url: str, pcm: bytes, rate: int, *, word_timestamps: bool = False, **config: Any
) -> dict[str, Any]:
    """Stream pcm16 as fast as the server takes it; the `done` event, with the windows' ends
    (each `progress` event's processed_ms, in seconds) as ``window_ends``."""
    config = {"type": "config", "model": STT, "sample_rate": rate, "partial": False, **config}
    ends: list[float] = []
    with connect(url + "/v1/audio/transcriptions/stream", max_size=None) as ws:
        ws.send(json.dumps({**config, "word_timestamps": word_timestamps}))
        for i in range(0, len(pcm), rate * 2):
            ws.send(pcm[i : i + rate * 2])
        ws.send(json.dumps({"type": "end"}))
        while True:
            event: dict[str, Any] = json.loads(ws.recv())
            if event["type"] == "progress":
                ends.append(event["processed_ms"] / 1000)
            if event["type"] == "done":
                return {**event, "window_ends": ends}
            if event["type"] == "error":
                raise RuntimeError(event)


def ws_transcribe(url: str, pcm: bytes, rate: int) -> tuple[float, str]:
    started = time.perf_counter()
    done = ws_transcribe_events(url, pcm, rate)
    return time.perf_counter() - started, str(done["text"])


def start_server(home: Path | None, name: str) -> tuple[VoxServer, Path, str]:
    """`vox serve` on ``home`` (default a fresh temp one), logging to ``bench-<name>.log`` in
    it, with the STT and TTS defaults pulled; (server, home, its WS base URL)."""
    home = home or Path(tempfile.mkdtemp(prefix=f"vox-bench-{name}-"))
    server = VoxServer(home, home / f"bench-{name}.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            for model in (STT, TTS):
                client.post("/api/pull", json={"model": model, "stream": False}).raise_for_status()
    except BaseException:
        server.stop()
        raise
    return server, home, "ws" + server.url.removeprefix("http")


def sandbox_python(home: Path, adapter: str) -> Path:
    return home / "sandboxes" / adapter / "bin" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    server, home, ws_url = start_server(args.home, "streaming")
    results: dict[str, Any] = {"runs": args.runs}
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            text = text_of(1000)
            ws_first_audio(ws_url, "Warm up.")  # loads the runner
            firsts, totals = [], []
            for _ in range(args.runs):
                first, total = ws_first_audio(ws_url, text)
                firsts.append(first)
                totals.append(total)
            env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
            inproc = json.loads(
                subprocess.run(
                    [
                        str(sandbox_python(home, "piper")),
                        "-c",
                        INPROCESS,
                        str(home / "models" / "piper" / "en-us-joe-medium"),
                        text,
                        str(args.runs),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout
            )
            results["tts"] = {
                "chars": len(text),
                "ws_first_audio_s": statistics.median(firsts),
                "ws_total_s": statistics.median(totals),
                "inprocess_first_sentence_s": statistics.median(inproc),
            }
            results["tts"]["ratio"] = (
                results["tts"]["ws_first_audio_s"] / results["tts"]["inprocess_first_sentence_s"]
            )

            recording = make_recording(client)
            wav = recording.wav()
            pcm = recording.pcm.tobytes()
            client.post("/api/transcribe", files={"file": ("w.wav", wav)}, data={"model": STT})
            unary, stream = [], []
            for _ in range(max(2, args.runs // 2)):
                started = time.perf_counter()
                client.post(
                    "/api/transcribe", files={"file": ("r.wav", wav)}, data={"model": STT}
                ).raise_for_status()
                unary.append(time.perf_counter() - started)
                stream.append(ws_transcribe(ws_url, pcm, recording.rate)[0])
            seconds = recording.seconds
            results["stt"] = {
                "audio_s": seconds,
                "unary_audio_s_per_s": seconds / statistics.median(unary),
                "stream_audio_s_per_s": seconds / statistics.median(stream),
            }
            results["stt"]["ratio"] = (
                results["stt"]["stream_audio_s_per_s"] / results["stt"]["unary_audio_s_per_s"]
            )
    finally:
        server.stop()
    tts, stt = results["tts"], results["stt"]
    print(f"{'metric':<44}{'stream':>10}{'baseline':>10}{'ratio':>8}  goal")
    print(
        f"{'TTS first audio, 1000 chars (s, median)':<44}{tts['ws_first_audio_s']:>10.3f}"
        f"{tts['inprocess_first_sentence_s']:>10.3f}{tts['ratio']:>8.2f}  <= 1.05"
    )
    print(
        f"{'STT throughput, audio s per s (median)':<44}{stt['stream_audio_s_per_s']:>10.1f}"
        f"{stt['unary_audio_s_per_s']:>10.1f}{stt['ratio']:>8.2f}  >= 0.90"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"streaming-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

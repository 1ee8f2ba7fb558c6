"""Audio formats: encode time and size per output format, decode time per input, streamed TTFB.

    uv run python bench/formats.py                  # starts its own server (VOX_HOME in a temp dir)
    uv run python bench/formats.py --url http://127.0.0.1:11435   # or uses a running one

Encode/decode are measured in process on one minute of piper speech (the server runs exactly
this code); time to first byte goes through the real server: a streamed 1,000-character text
against the same text not streamed, and against the first sentence alone (goal: first byte at
most the first sentence's time plus 15 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
from vox_control.audio.decode import decode_audio
from vox_control.audio.encode import SPEECH_FORMATS, encode_all, output_rate

RESULTS = Path(__file__).resolve().parent / "results"
TTS = "piper:en-us-joe-medium"
FIRST = "The committee met on a grey Tuesday morning to review the plans for the new library."
REST = (
    " Everyone agreed that the old building had served the town well for more than sixty years."
    " The roof leaked every spring, and the reading room was too cold to use in winter."
    " After a long discussion, the members voted to build a new library near the river."
    " The design includes a children's wing, a quiet study hall, and a small theater."
    " Construction will begin next year if the town council approves the budget."
    " The librarians have already started packing the rare books into special boxes."
    " Volunteers will help move the collection when the new shelves are ready."
    " The mayor thanked the committee for its careful work on the proposal."
    " A public meeting will be held next month so that residents can ask questions."
    " Everyone is welcome, and coffee and cake will be served in the hall after the meeting."
    " The committee hopes the new library will open its doors within three years."
)
LONG_TEXT = FIRST + REST  # about 1,000 characters, eleven sentences
GOAL_MS = 15.0
# container -> (muxer, codec, codec rate) for the decode side (uploads people send).
INPUTS = {
    "wav": ("wav", "pcm_s16le", None),
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "libmp3lame", None),
    "ogg/opus": ("ogg", "libopus", 48000),
    "webm/opus": ("webm", "libopus", 48000),
    "m4a/aac": ("ipod", "aac", None),
}


def median_time(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_container(
    pcm16: np.ndarray, rate: int, muxer: str, codec: str, codec_rate: int | None
) -> bytes:
    import soxr

    out_rate = codec_rate or rate
    data = pcm16 if out_rate == rate else soxr.resample(pcm16, rate, out_rate).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = out_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:  # type: ignore[union-attr]
            container.mux(packet)
    return buf.getvalue()


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url.rstrip("/")
        return
    with tempfile.TemporaryDirectory(prefix="vox-bench-formats-") as home:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "VOX_HOME": home}
        log = open(Path(home) / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "vox_cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.3)
            with httpx.Client(base_url=base, timeout=600) as client:
                client.post("/api/pull", json={"model": TTS, "stream": False}).raise_for_status()
            yield base
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def one_minute_of_speech(client: httpx.Client) -> tuple[np.ndarray, int]:
    response = client.post("/api/synthesize", json={"model": TTS, "input": LONG_TEXT})
    response.raise_for_status()
    pcm = np.frombuffer(response.content[44:], dtype="<i2")
    rate = int(response.headers["x-sample-rate"])
    reps = int(np.ceil(60 * rate / len(pcm)))
    return np.tile(pcm, reps)[: 60 * rate].copy(), rate


def ttfb(client: httpx.Client, text: str, fmt: str) -> tuple[float, float]:
    """(seconds to the first body byte, seconds to the last) for one speech request."""
    started = time.perf_counter()
    first = None
    body = {"model": TTS, "input": text, "response_format": fmt}
    with client.stream("POST", "/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    return first or total, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
    }
    with server(args.url) as base, httpx.Client(base_url=base, timeout=600) as client:
        pcm, rate = one_minute_of_speech(client)
        raw = pcm.tobytes()

        print(f"one minute of speech at {rate} Hz ({len(raw)} bytes of PCM16)\n")
        print(f"{'output':<8}{'rate':>8}{'encode ms':>12}{'bytes':>12}{'x realtime':>12}")
        outputs = {}
        for fmt in SPEECH_FORMATS:
            data = encode_all(raw, rate, fmt)
            seconds = median_time(lambda fmt=fmt: encode_all(raw, rate, fmt), args.runs)
            out_rate = output_rate(fmt, rate, None)
            outputs[fmt] = {"rate": out_rate, "encode_ms": seconds * 1000, "bytes": len(data)}
            print(
                f"{fmt:<8}{out_rate:>8}{seconds * 1000:>12.1f}{len(data):>12}{60 / seconds:>12.0f}"
            )
        result["encode_one_minute"] = outputs

        print(f"\n{'input':<11}{'decode ms':>12}{'bytes':>12}   (to 16 kHz mono float32)")
        inputs = {}
        for kind, (muxer, codec, codec_rate) in INPUTS.items():
            data = make_container(pcm, rate, muxer, codec, codec_rate)
            seconds = median_time(lambda data=data: decode_audio(data, 16000), args.runs)
            inputs[kind] = {"decode_ms": seconds * 1000, "bytes": len(data)}
            print(f"{kind:<11}{seconds * 1000:>12.1f}{len(data):>12}")
        result["decode_one_minute"] = inputs

        ttfb(client, FIRST, "wav")  # warm-up: load the model
        print(f"\ntime to first byte, {len(LONG_TEXT)}-character text (medians of {args.runs})")
        first_sentence = statistics.median(ttfb(client, FIRST, "wav")[1] for _ in range(args.runs))
        rows = {}
        for fmt in ("wav", "mp3", "opus"):
            runs = [ttfb(client, LONG_TEXT, fmt) for _ in range(args.runs)]
            first = statistics.median(r[0] for r in runs)
            total = statistics.median(r[1] for r in runs)
            rows[fmt] = {"first_byte_s": first, "whole_s": total}
        print(f"{'first sentence alone (whole request)':<40}{first_sentence * 1000:>9.0f} ms")
        for fmt, row in rows.items():
            print(
                f"{'streamed ' + fmt + ': first byte':<40}{row['first_byte_s'] * 1000:>9.0f} ms"
                f"   (whole text {row['whole_s'] * 1000:.0f} ms,"
                f" {row['whole_s'] / row['first_byte_s']:.1f}x later)"
            )
        margin_ms = (rows["wav"]["first_byte_s"] - first_sentence) * 1000
        verdict = "met" if margin_ms <= GOAL_MS else "MISSED"
        print(
            f"goal: first byte <= first sentence + {GOAL_MS:.0f} ms: {margin_ms:+.1f} ms, {verdict}"
        )
        result["ttfb"] = {
            "chars": len(LONG_TEXT),
            "first_sentence_s": first_sentence,
            "streamed": rows,
            "margin_ms": margin_ms,
            "goal_ms": GOAL_MS,
            "goal_met": margin_ms <= GOAL_MS,
        }
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"formats-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

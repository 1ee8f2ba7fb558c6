"""Soak: N minutes of mixed load on loopback, with the server's resources sampled each minute.

Starts `vox serve` (bench.streaming.start_server: the STT and TTS defaults pulled), then runs
``--clients`` threads until the time is up, each picking the next request from a fixed mix:
speech (wav, mp3, opus, and SSE), transcription, the streaming STT and TTS WebSockets,
list/ps/show/voices, and requests that must fail cleanly (unknown model, bad format, deep JSON,
NUL in text, bytes that are not audio, a bad stream config). Every ``--sample-s`` seconds
(default 60) it records, for the control plane and for each runner in /api/ps: RSS, open
descriptors and threads (from /proc). A request is "unexpected" when it gets a 5xx, the wrong
status, or a transport error. Prints a table and writes JSON to bench/results/soak-<UTC>.json;
exits 1 when any request was unexpected.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.concurrency import pct  # noqa: E402
from bench.streaming import STT, TTS, start_server  # noqa: E402

SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."
DEEP = b'{"model": "x", "y": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"

Op = Callable[["Load"], int | None]  # returns the HTTP status, None for a stream that worked


class Load:
    """What the operations share: the server's URLs and the clips made at start."""

    def __init__(self, url: str, ws: str, wav: bytes, pcm16k: bytes) -> None:
        self.url, self.ws, self.wav, self.pcm16k = url, ws, wav, pcm16k
        self.http = httpx.Client(base_url=url, timeout=600)


def speech(fmt: str, stream_format: str = "audio") -> Op:
    def op(load: Load) -> int:
        body = {"model": TTS, "input": SENTENCE, "response_format": fmt}
        body["stream_format"] = stream_format
        with load.http.stream("POST", "/v1/audio/speech", json=body) as response:
            size = sum(len(piece) for piece in response.iter_bytes())
        if response.status_code == 200 and size < 1000:
            raise RuntimeError(f"speech {fmt}/{stream_format}: only {size} bytes")
        return response.status_code

    return op


def transcription(load: Load) -> int:
    files = {"file": ("clip.wav", load.wav, "audio/wav")}
    response = load.http.post("/v1/audio/transcriptions", files=files, data={"model": STT})
    if response.status_code == 200 and "fox" not in response.json()["text"].lower():
        raise RuntimeError(f"transcript lost the clip: {response.text[:200]}")
    return response.status_code


def ws_stt(load: Load) -> None:
    with connect(load.ws + "/v1/audio/transcriptions/stream", open_timeout=60) as ws:
        ws.send(json.dumps({"type": "config", "model": STT, "partial": False}))
        for i in range(0, len(load.pcm16k), 32_000):
            ws.send(load.pcm16k[i : i + 32_000])
        ws.send(json.dumps({"type": "end"}))
        while (event := json.loads(ws.recv(timeout=600)))["type"] != "done":
            if event["type"] == "error":
                raise RuntimeError(f"stt stream: {event}")


def ws_tts(load: Load) -> None:
    with connect(load.ws + "/v1/audio/speech/stream", open_timeout=60) as ws:
        ws.send(json.dumps({"type": "config", "model": TTS}))
        ws.send(json.dumps({"type": "text", "text": SENTENCE + " " + SENTENCE}))
        ws.send(json.dumps({"type": "end"}))
        audio = 0
        while True:
            message = ws.recv(timeout=600)
            if isinstance(message, bytes):
                audio += len(message)
                continue
            event = json.loads(message)
            if event["type"] == "error":
                raise RuntimeError(f"tts stream: {event}")
            if event["type"] == "done":
                break
        if audio < 10_000:
            raise RuntimeError(f"tts stream: only {audio} bytes of audio")


def ws_bad_config(load: Load) -> None:
    with connect(load.ws + "/v1/audio/transcriptions/stream", open_timeout=60) as ws:
        ws.send(json.dumps({"type": "config", "model": STT, "language": "xx"}))
        event = json.loads(ws.recv(timeout=60))
    if event.get("param") != "language":
        raise RuntimeError(f"bad config answered {event}")


def get(path: str, **params: str) -> Op:
    return lambda load: load.http.get(path, params=params).status_code


def post(path: str, body: dict[str, Any] | bytes) -> Op:
    def op(load: Load) -> int:
        if isinstance(body, bytes):
            return load.http.post(path, content=body).status_code
        return load.http.post(path, json=body).status_code

    return op


# Fixed bytes: fresh random ones are, now and then, a stream FFmpeg decodes (MPEG audio frames
# have a 11-bit sync word); one take in 689 was, transcribed with 200 in a 30-minute soak.
NOT_AUDIO = random.Random(0).randbytes(4096)


def not_audio(load: Load) -> int:
    files = {"file": ("x.wav", NOT_AUDIO, "audio/wav")}
    return load.http.post("/v1/audio/transcriptions", files=files).status_code


# name -> (operation, the status it must answer; None: a WebSocket that must complete)
MIX: dict[str, tuple[Op, int | None]] = {
    "speech_wav": (speech("wav"), 200),
    "transcription": (transcription, 200),
    "list": (get("/api/list"), 200),
    "speech_mp3": (speech("mp3"), 200),
    "ws_stt": (ws_stt, None),
    "ps": (get("/api/ps"), 200),
    "speech_opus": (speech("opus"), 200),
    "show": (post("/api/show", {"model": STT}), 200),
    "ws_tts": (ws_tts, None),
    "voices": (get("/api/voices", model=TTS), 200),
    "speech_sse": (speech("mp3", "sse"), 200),
    "err_unknown_model": (post("/v1/audio/speech", {"model": "piper:nope", "input": "x"}), 404),
    "err_bad_format": (post("/v1/audio/speech", {"input": "x", "response_format": "xyz"}), 400),
    "err_deep_json": (post("/api/show", DEEP), 400),
    "err_nul_text": (post("/v1/audio/speech", {"model": TTS, "input": "a\x00b"}), 400),
    "err_not_audio": (not_audio, 400),
    "err_ws_config": (ws_bad_config, None),
}


def proc_figures(pid: int) -> dict[str, float] | None:
    """RSS (MB), open descriptors and threads of one process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "fds": fds,
        "threads": int(fields["Threads"]),
    }


def sample(control_pid: int, url: str, started: float, counts: dict[str, int]) -> dict[str, Any]:
    loaded = httpx.get(f"{url}/api/ps", timeout=60).json()["models"]
    runners = {m["name"]: proc_figures(int(m["pid"])) for m in loaded}
    return {
        "minute": round((time.monotonic() - started) / 60, 2),
        "control": proc_figures(control_pid),
        "runners": {name: fig for name, fig in runners.items() if fig},
        "requests": dict(counts),
    }


def run(load: Load, minutes: float, clients: int, sample_s: float, pid: int) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + minutes * 60
    lock = threading.Lock()
    latencies: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    unexpected: list[dict[str, Any]] = []
    order = itertools.cycle(MIX)

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                name = next(order)
            op, want = MIX[name]
            began = time.perf_counter()
            try:
                status = op(load)
                problem = None if status == want else f"status {status}, expected {want}"
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"[:300]
            with lock:
                counts["total"] += 1
                if problem:
                    counts["unexpected"] += 1
                    at = round(time.monotonic() - started, 1)
                    unexpected.append({"op": name, "problem": problem, "at_s": at})
                else:
                    latencies[name].append(time.perf_counter() - began)

    samples = [sample(pid, load.url, started, counts)]
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    while time.monotonic() < deadline:
        time.sleep(max(0.0, min(sample_s, deadline - time.monotonic())))
        samples.append(sample(pid, load.url, started, counts))
        row = samples[-1]
        print(f"  minute {row['minute']:.1f}: {row['control']} {row['requests']}", file=sys.stderr)
    for thread in threads:
        thread.join(timeout=900)
    samples.append(sample(pid, load.url, started, counts))
    ops = {
        name: {
            "n": len(values),
            "p50_s": round(pct(values, 0.5), 3),
            "p95_s": round(pct(values, 0.95), 3),
        }
        for name, values in sorted(latencies.items())
    }
    return {"samples": samples, "ops": ops, "unexpected": unexpected, "counts": dict(counts)}


def make_clips(load: Load) -> None:
    """The clip every transcription uses, spoken by the server itself (WAV, and pcm16 16 kHz)."""
    body = {"model": TTS, "input": SENTENCE}
    load.wav = load.http.post("/api/synthesize", json=body).raise_for_status().content
    pcm = {**body, "response_format": "pcm", "sample_rate": 16000}
    load.pcm16k = load.http.post("/v1/audio/speech", json=pcm).raise_for_status().content


def table(result: dict[str, Any]) -> None:
    names = sorted({n for s in result["samples"] for n in s["runners"]})
    head = f"{'minute':>6} {'requests':>8} | {'control RSS MB':>14} {'fds':>5} {'thr':>4}"
    print(head + "".join(f" | {n[:22]:>22} RSS/fds/thr" for n in names))
    for s in result["samples"]:
        c = s["control"] or {"rss_mb": 0, "fds": 0, "threads": 0}
        line = f"{s['minute']:>6.1f} {s['requests'].get('total', 0):>8} | "
        line += f"{c['rss_mb']:>14.1f} {c['fds']:>5} {c['threads']:>4}"
        for n in names:
            r = s["runners"].get(n)
            cell = f"{r['rss_mb']:.0f}/{r['fds']}/{r['threads']}" if r else "-"
            line += f" | {cell:>34}"
        print(line)
    print(f"\n{'operation':<18} {'n':>5} {'p50 s':>7} {'p95 s':>7}")
    for name, op in result["ops"].items():
        print(f"{name:<18} {op['n']:>5} {op['p50_s']:>7.3f} {op['p95_s']:>7.3f}")
    counts = result["counts"]
    print(f"\nrequests {counts.get('total', 0)}, unexpected {counts.get('unexpected', 0)}")
    for problem in result["unexpected"][:10]:
        print(f"  {problem['op']}: {problem['problem']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=3, help="concurrent client threads")
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--home", type=Path, default=None, help="default: a fresh temp home")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    server, home, ws = start_server(args.home, "soak")
    assert server.proc is not None
    try:
        load = Load(server.url, ws, b"", b"")
        make_clips(load)
        # Load both models before the first sample, so the table starts from a warm server.
        transcription(load)
        result = run(load, args.minutes, args.clients, args.sample_s, server.proc.pid)
    finally:
        server.stop()
    table(result)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    out = args.out or ROOT / "bench" / "results" / f"soak-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"bench": "soak", "commit": git.stdout.strip(), "cpus": os.cpu_count()}
    meta |= {"minutes": args.minutes, "clients": args.clients, "home": str(home)}
    out.write_text(json.dumps({**meta, **result}, indent=1))
    print(f"wrote {out}")
    sys.exit(1 if result["counts"].get("unexpected") else 0)


if __name__ == "__main__":
    main()

"""Concurrency through the scheduler: 1/2/4/8 clients for STT and TTS, and its own overhead.

Starts `vox serve` on a Vox home that has (or gets, by /api/pull) whisper:tiny.en and
piper:en-us-joe-medium, then for each client count runs every client in a loop for a fixed
number of requests: throughput, p50/p95 latency, time to first audio (TTS, streamed pcm), errors.
The scheduler's own overhead per request is measured in process: `Scheduler.use()` on a loaded
model (the fast path every request takes) with a runner that does nothing.
Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STT = "whisper:tiny.en"
TTS = "piper:en-us-joe-medium"
PARAGRAPH = (
    "Good morning, and welcome to the weekly update. The build server moved on Tuesday. "
    "Every test passed on the first try. Next week we speed up the audio pipeline. "
    "Please send your questions before Thursday."
)  # five sentences, as in the figures
CLIP_TEXT = "The old lighthouse stood at the edge of the cliff for more than a hundred years."


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


@contextlib.contextmanager
def server(home: Path, log: Path, env: dict[str, str]) -> Iterator[str]:
    from tests.conftest import VoxServer

    vox = VoxServer(home, log, env={"VOX_PULL_DEFAULTS": "false", **env})
    vox.start()
    try:
        yield vox.url
    finally:
        vox.stop()


def ensure_models(url: str) -> None:
    with httpx.Client(base_url=url, timeout=1800) as client:
        for name in (STT, TTS):
            response = client.post("/api/pull", json={"model": name, "stream": False})
            response.raise_for_status()


def run_clients(clients: int, per_client: int, call: Any) -> dict[str, Any]:
    latencies: list[float] = []
    firsts: list[float] = []
    errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def worker() -> None:
        nonlocal errors
        barrier.wait()
        for _ in range(per_client):
            started = time.perf_counter()
            try:
                first = call()
            except Exception:
                with lock:
                    errors += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
                if first is not None:
                    firsts.append(first - started)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / wall,
        "p50_s": pct(latencies, 0.5),
        "p95_s": pct(latencies, 0.95),
        "first_audio_p50_s": pct(firsts, 0.5) if firsts else None,
        "first_audio_p95_s": pct(firsts, 0.95) if firsts else None,
    }


def stt_call(url: str, wav: bytes) -> Any:
    def call() -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            response = client.post(
                "/api/transcribe", files={"file": ("a.wav", wav)}, data={"model": STT}
            )
            response.raise_for_status()

    return call


def tts_call(url: str) -> Any:
    body = {"model": TTS, "input": PARAGRAPH, "response_format": "pcm", "sample_rate": 22050}

    def call() -> float:
        first = 0.0
        with (
            httpx.Client(base_url=url, timeout=300) as client,
            client.stream("POST", "/v1/audio/speech", json=body) as response,
        ):
            response.raise_for_status()
            for _ in response.iter_bytes():
                first = first or time.perf_counter()
        return first

    return call


def scheduler_overhead(n: int = 20000) -> dict[str, float]:
    """Microseconds per `use()` on a loaded model, enter plus exit, with a do-nothing runner."""
    from tests.control.fakes import Harness

    async def measure() -> list[float]:
        with tempfile.TemporaryDirectory() as tmp:
            harness = Harness(Path(tmp))
            async with harness.scheduler.use("bench:model"):
                pass  # loaded once; every use below takes the fast path
            samples = []
            for _ in range(n):
                started = time.perf_counter_ns()
                async with harness.scheduler.use("bench:model"):
                    pass
                samples.append((time.perf_counter_ns() - started) / 1000)
            await harness.scheduler.stop(drain=0)
            return samples

    samples = asyncio.run(measure())
    return {"p50_us": pct(samples, 0.5), "p95_us": pct(samples, 0.95), "n": float(n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("VOX_BENCH_HOME", "")))
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=1, help="VOX_NUM_PARALLEL")
    args = parser.parse_args()
    home = args.home if str(args.home) not in ("", ".") else Path(tempfile.mkdtemp()) / "home"
    counts = [int(c) for c in args.clients.split(",")]
    env = {"VOX_NUM_PARALLEL": str(args.parallel), "VOX_MAX_QUEUE": "64"}
    rows: list[dict[str, Any]] = []
    with server(home, home.parent / "bench-concurrency.log", env) as url:
        ensure_models(url)
        with httpx.Client(base_url=url, timeout=300) as client:
            wav = client.post(
                "/api/synthesize", json={"model": TTS, "input": CLIP_TEXT}
            ).content  # warms piper too
            client.post("/api/transcribe", files={"file": ("a.wav", wav)}, data={"model": STT})
        for kind, call in (("stt", stt_call(url, wav)), ("tts", tts_call(url))):
            for clients in counts:
                row = run_clients(clients, args.per_client, call)
                row["kind"] = kind
                rows.append(row)
    overhead = scheduler_overhead()
    print(
        f"{'kind':4} {'clients':>7} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} "
        f"{'1st audio p50':>13} {'p95':>6} {'errors':>6}"
    )
    for r in rows:
        fa = r["first_audio_p50_s"]
        fa95 = r["first_audio_p95_s"]
        print(
            f"{r['kind']:4} {r['clients']:>7} {r['throughput_rps']:>7.2f} {r['p50_s']:>7.2f} "
            f"{r['p95_s']:>7.2f} {'-' if fa is None else f'{fa:.2f}':>13} "
            f"{'-' if fa95 is None else f'{fa95:.2f}':>6} {r['errors']:>6}"
        )
    print(
        f"scheduler overhead per request (use() on a loaded model): "
        f"p50 {overhead['p50_us']:.1f} us, p95 {overhead['p95_us']:.1f} us (goal p50 < 2 ms)"
    )
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result = {
        "bench": "concurrency",
        "commit": git.stdout.strip(),
        "cpus": os.cpu_count(),
        "num_parallel": args.parallel,
        "per_client": args.per_client,
        "rows": rows,
        "scheduler_overhead": overhead,
    }
    path = out / f"concurrency-{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""A burst of speech: N clients POST /v1/audio/speech with the same paragraph at once.

Usage: ``uv run python bench/speech_burst.py [--home DIR] [--rounds 5] [--clients 4]
[--peer-venvs DIR] [--baseline-src DIR]``.

The issue's scenario: 4 clients, each streaming (``pcm``) the 400-character, six-sentence
paragraph of bench/overhead.py through piper:en-us-joe-medium, all sent together. Per round:

- first audio per client (send -> first body byte), total per client (send -> last byte),
  and the batch wall time (first send -> last client done);
- the throughput floor: the same N paragraphs synthesized one after the other in process
  (bench/inprocess.py in the piper sandbox, piper's default threads), so "batch wall / floor"
  is what fairness and the server cost in throughput;
- one client alone (synthesis time and first audio), to keep steady single-client speed in view;
- with ``--peer-venvs``, vox-runtime 0.2.93 from PyPI on the same voice files, in the same rounds
  (bench/peer_runtime.py);
- with ``--baseline-src``, a second Vox from an older checkout of this repository (its
  ``git archive``: protocol, runners, sandboxes, control, cli) on a home sharing the models, for
  before/after figures taken in the same rounds.

Vox, the floor and the peer alternate within each round, so drift falls on all alike. Medians
over the rounds; prints a table and writes JSON to bench/results/speech-burst-<UTC>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.overhead import PARAGRAPH  # noqa: E402
from bench.peer_runtime import start as start_peer  # noqa: E402
from tests.conftest import VoxServer, free_port  # noqa: E402

TTS = "piper:en-us-joe-medium"
Call = Callable[[], tuple[float, float]]  # -> (first audio s, total s)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def http_call(url: str, body: dict[str, Any]) -> Call:
    def call() -> tuple[float, float]:
        first = 0.0
        started = time.perf_counter()
        with (
            httpx.Client(base_url=url, timeout=300) as client,
            client.stream("POST", "/v1/audio/speech", json=body) as response,
        ):
            response.raise_for_status()
            for _ in response.iter_bytes():
                first = first or time.perf_counter() - started
        return first, time.perf_counter() - started

    return call


def burst(clients: int, call: Call) -> dict[str, Any]:
    """All clients at once (a barrier releases them): per-client figures and the batch wall."""
    results: list[tuple[float, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        barrier.wait()
        outcome = call()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "first_audio_s": [r[0] for r in results],
        "total_s": [r[1] for r in results],
    }


class InProcess:
    """bench/inprocess.py in the piper sandbox: the throughput floor, one paragraph at a time."""

    def __init__(self, home: Path) -> None:
        python = home / "sandboxes" / "piper" / "bin" / "python"
        model_dir = home / "models" / "piper" / "en-us-joe-medium"
        self.proc = subprocess.Popen(
            [str(python), str(ROOT / "bench" / "inprocess.py"), "piper", str(model_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()
        self.synthesize(PARAGRAPH)  # warm up

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        reply: dict[str, Any] = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def synthesize(self, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "synthesize", "text": text}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


def start_baseline(src: Path, home: Path) -> VoxServer:
    """A Vox from another checkout's sources, on a home of its own that shares the models."""
    base_home = home.parent / "baseline-home"
    base_home.mkdir(exist_ok=True)
    if not (base_home / "models").exists():
        (base_home / "models").symlink_to(home / "models")
    paths = [src / p / "src" for p in ("control", "protocol", "cli", "sandboxes")]
    env = {"VOX_PULL_DEFAULTS": "0", "PYTHONPATH": os.pathsep.join(map(str, paths))}
    server = VoxServer(base_home, home.parent / "baseline.log", env=env)
    server.start()
    return server


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(rounds: list[dict[str, Any]], key: str) -> dict[str, float]:
    runs = [r[key] for r in rounds if key in r]
    return {
        "first_audio_median_s": median([x for r in runs for x in r["first_audio_s"]]),
        "batch_wall_median_s": median([r["wall_s"] for r in runs]),
        "batch_wall_best_s": min(r["wall_s"] for r in runs),  # least disturbed on a busy box
        "per_client_total_median_s": median([x for r in runs for x in r["total_s"]]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/vox-bench-speech/home"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--peer-venvs", type=Path, default=None)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--url", default=None, help="an already running Vox (skips starting one)")
    args = parser.parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    body = {"model": TTS, "input": PARAGRAPH, "response_format": "pcm"}
    vox: VoxServer | None = None
    url = args.url
    if url is None:
        vox = VoxServer(args.home, args.home.parent / "vox.log", env={"VOX_PULL_DEFAULTS": "0"})
        vox.start()
        url = vox.url
    peer: subprocess.Popen[bytes] | None = None
    baseline: VoxServer | None = None
    try:
        with httpx.Client(base_url=url, timeout=1800) as client:
            client.post("/api/pull", json={"model": TTS, "stream": False}).raise_for_status()
        sides: dict[str, Call] = {"vox": http_call(url, body)}
        if args.baseline_src is not None:
            baseline = start_baseline(args.baseline_src, args.home)
            sides["vox-baseline"] = http_call(baseline.url, body)
        if args.peer_venvs is not None:
            models = args.home / "models"
            peer, peer_url = start_peer(args.peer_venvs, args.home.parent, models, free_port())
            sides["vox-runtime"] = http_call(peer_url, body)
        for call in sides.values():
            call()  # warm up (loads the model)
        local = InProcess(args.home)
        rounds: list[dict[str, Any]] = []
        try:
            for n in range(args.rounds):
                row: dict[str, Any] = {}
                order = list(sides) if n % 2 == 0 else list(reversed(sides))
                for name in order:
                    row[name] = burst(args.clients, sides[name])
                    row[f"{name}-single"] = burst(1, sides[name])
                floor = [local.synthesize(PARAGRAPH) for _ in range(args.clients)]
                row["floor"] = {
                    "wall_s": sum(f["seconds"] for f in floor),
                    "first_audio_s": [floor[0]["first_audio_s"]],
                    "total_s": [floor[0]["seconds"]],
                }
                rounds.append(row)
                log(
                    f"round {n + 1}: "
                    + ", ".join(f"{k} wall {v['wall_s']:.2f}" for k, v in row.items())
                )
        finally:
            local.close()
    finally:
        if peer is not None:
            peer.terminate()
            peer.wait(30)
        if vox is not None:
            vox.stop()
        if baseline is not None:
            baseline.stop()
    summary = {key: summarize(rounds, key) for key in rounds[0]}
    print(f"{args.clients} clients x {len(PARAGRAPH)}-char paragraph, {args.rounds} rounds")
    print(
        f"{'side (medians, s)':20} {'first audio':>11} {'batch wall':>10} {'best':>5} "
        f"{'per-client total':>16}"
    )
    for key, s in summary.items():
        print(
            f"{key:20} {s['first_audio_median_s']:>11.2f} {s['batch_wall_median_s']:>10.2f} "
            f"{s['batch_wall_best_s']:>5.2f} {s['per_client_total_median_s']:>16.2f}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result = {
        "bench": "speech-burst",
        "commit": git.stdout.strip(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "clients": args.clients,
        "summary": summary,
        "rounds": rounds,
    }
    path = out / f"speech-burst-{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

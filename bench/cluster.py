"""Thrash vs. route: interleaved speech + transcription on one Vox node vs. two behind Ray Serve.

One node whose memory budget (VOX_MEMORY_BUDGET) fits one model reloads on every switch; two
nodes with one model each never reload. Both run behind the same ingress (vox_cluster), so the
difference is the routing. Also measured: the ingress's overhead per request (p50) against the
same request sent to the node directly. Needs `uv sync --group cluster`.

    uv run python bench/cluster.py [--rounds 10] [--budget 300MB] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

# Ray reads this on import: workers must use this venv's interpreter, not `uv run` anew.
os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"

BENCH_DIR = Path(__file__).resolve().parent
TTS = "piper:en-us-joe-medium"
STT = "whisper:tiny.en"
TEXT = "The quick brown fox jumps over the lazy dog."


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def loads(home: Path, logs: set[Path]) -> int:
    """Model loads in this scenario's node logs (the scheduler logs one line per load)."""
    return sum(
        line.count(" loaded ")
        for path in home.glob("node-*.log")
        if path not in logs
        for line in path.read_text(errors="replace").splitlines()
    )


def workload(url: str, rounds: int) -> dict[str, Any]:
    """`rounds` x (speech, then transcription of it), one client, every request timed."""
    latencies: list[float] = []
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as client:
        for _ in range(rounds):
            t = time.perf_counter()
            body = {"model": TTS, "input": TEXT, "response_format": "wav"}
            speech = client.post("/v1/audio/speech", json=body)
            speech.raise_for_status()
            latencies.append(time.perf_counter() - t)
            t = time.perf_counter()
            files = {"file": ("a.wav", speech.content, "audio/wav")}
            text = client.post("/v1/audio/transcriptions", data={"model": STT}, files=files)
            text.raise_for_status()
            latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50_s": statistics.median(latencies),
        "p99_s": percentile(latencies, 0.99),
    }


def overhead(ingress: str, node: str, n: int) -> dict[str, float]:
    """p50 per request through the ingress and straight to the node, alternating the two.

    Two requests: GET /api/list (no model: it measures the hop alone) and a short speech
    request to the node that holds piper.
    """
    speech = {"model": TTS, "input": "Hi.", "response_format": "pcm"}
    calls = {
        "list": lambda c: c.get("/api/list"),
        "speech": lambda c: c.post("/v1/audio/speech", json=speech),
    }
    out: dict[str, float] = {}
    with (
        httpx.Client(base_url=ingress, timeout=600) as via,
        httpx.Client(base_url=node, timeout=600) as direct,
    ):
        for name, call in calls.items():
            times: dict[str, list[float]] = {"ingress": [], "direct": []}
            for _ in range(n):
                for side, client in (("ingress", via), ("direct", direct)):
                    t = time.perf_counter()
                    call(client).raise_for_status()
                    times[side].append(time.perf_counter() - t)
            for side, values in times.items():
                out[f"{name}_{side}_p50_ms"] = statistics.median(values) * 1000
            out[f"{name}_overhead_p50_ms"] = (
                out[f"{name}_ingress_p50_ms"] - out[f"{name}_direct_p50_ms"]
            )
    return out


def scenario(home: Path, port: int, rounds: int, **args: Any) -> tuple[dict[str, Any], str]:
    from ray import serve
    from vox_cluster.app import build

    before = set(home.glob("node-*.log"))
    serve.run(build({"home": str(home), "num_cpus": 0.5, **args}), name="vox", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    workload(url, 1)  # warm-up: pulls, sandboxes, first loads, the router learning
    warm = loads(home, before)
    result = workload(url, rounds)
    result["reloads"] = loads(home, before) - warm
    return result, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--budget", default="300MB", help="one node's budget: fits one model")
    parser.add_argument("--overhead-requests", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or BENCH_DIR / "results" / f"cluster-{stamp}.json"

    import ray
    from ray import serve

    with tempfile.TemporaryDirectory(prefix="vox-bench-cluster-") as tmp:
        home = Path(tmp) / "store"
        ray.init(num_cpus=2, include_dashboard=False)
        try:
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            log("one node, budget for one model ...")
            one, _ = scenario(home, port, args.rounds, replicas=1, models_per_replica=2,
                              memory_budget=args.budget)  # fmt: skip
            serve.delete("vox")
            log("two nodes, one model each ...")
            two, url = scenario(home, port, args.rounds, replicas=2, models_per_replica=1)
            nodes = httpx.get(f"{url}/nodes", timeout=30).json()["nodes"]
            direct = next(n["url"] for n in nodes if TTS in n["models"])
            cost = overhead(url, direct, args.overhead_requests)
        finally:
            serve.shutdown()
            ray.shutdown()
    rows = [("one node (thrashing)", one), ("two nodes (routed)", two)]
    print(f"{'setup':<22} {'req/s':>7} {'p50 s':>7} {'p99 s':>7} {'reloads':>8}")
    for name, r in rows:
        print(
            f"{name:<22} {r['rps']:>7.2f} {r['p50_s']:>7.3f} {r['p99_s']:>7.3f} {r['reloads']:>8}"
        )
    for name in ("list", "speech"):
        print(
            f"ingress overhead p50 ({name}): {cost[f'{name}_overhead_p50_ms']:.1f} ms "
            f"({cost[f'{name}_ingress_p50_ms']:.1f} ms via ingress, "
            f"{cost[f'{name}_direct_p50_ms']:.1f} ms direct)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"when": stamp, "rounds": args.rounds, "budget": args.budget,
              "one_node": one, "two_nodes": two, "ingress": cost}  # fmt: skip
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

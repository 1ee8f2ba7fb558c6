"""Pull throughput: a ~150 MB repo from a local hub through Vox vs a bare snapshot_download,
and through Vox with 0%, 1% and 5% of connections dropped (per MiB sent) by a fault proxy."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from huggingface_hub import snapshot_download  # noqa: E402

from tests.conftest import VoxServer  # noqa: E402
from tests.faults import FaultProxy  # noqa: E402
from tests.hf.hub import CACHE, OlahHub  # noqa: E402

REPO = "vox-bench/pull-150mb"
MODEL = "bench:pull"
GOAL = 0.9  # Vox throughput / snapshot_download throughput, at least
DROP_RATES = (0.0, 0.01, 0.05)  # chance that a connection drops after each MiB it sent


def seed(hub: OlahHub) -> tuple[int, str, list[str]]:
    """Three LFS files, 150 MB in all, of incompressible bytes kept in the test cache."""
    blobs = CACHE / "bench-blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes | Path] = {"config.json": b'{"bench": true}'}
    for i, size in enumerate((90_000_000, 45_000_000, 15_000_000)):
        path = blobs / f"part{i}.bin"
        if not path.exists() or path.stat().st_size != size:
            path.write_bytes(os.urandom(size))
        files[f"weights/part{i}.bin"] = path
    commit = hub.seed(REPO, files)
    size = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in files.values())
    return size, commit, list(files)


def vox_pull(server: VoxServer) -> tuple[float, int]:
    """Seconds from POST /api/pull to the store commit (before the sandbox step), retries."""
    with server.client() as client:
        client.request("DELETE", "/api/delete", json={"model": MODEL})
        started = time.perf_counter()
        elapsed = None
        retries = 0
        with client.stream("POST", "/api/pull", json={"model": MODEL}) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                status = str(event.get("status", ""))
                retries += status.startswith("retrying in ")
                if elapsed is None and status.startswith("preparing"):
                    elapsed = time.perf_counter() - started
                if status == "error":
                    raise RuntimeError(event)
        if elapsed is None:
            raise RuntimeError("the pull never reached the sandbox step")
        return elapsed, retries


def faulty_pulls(
    server: VoxServer, proxy: FaultProxy, size: int, runs: int
) -> list[dict[str, Any]]:
    """Median pull time through the proxy at each drop rate, with retries and bytes sent."""
    rows = []
    for rate in DROP_RATES:
        proxy.drop_rate = rate
        times, retries, sent = [], [], []
        for _ in range(runs):
            before = sum(r.sent for r in proxy.responses)
            seconds, tries = vox_pull(server)
            times.append(seconds)
            retries.append(tries)
            sent.append(sum(r.sent for r in proxy.responses) - before)
        rows.append(
            {
                "drop_rate": rate,
                "seconds": times,
                "median_s": statistics.median(times),
                "mb_per_s": size / 1e6 / statistics.median(times),
                "retries": retries,
                "bytes_sent": sent,
            }
        )
    return rows


def bare_download(hub: OlahHub, root: Path) -> float:
    target = root / "snapshot"
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    snapshot_download(REPO, endpoint=hub.url, local_dir=target, cache_dir=root / "hf-cache")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vox-bench-pull-") as tmp:
        root = Path(tmp)
        os.environ["HF_HOME"] = str(root / "hf-home")
        hub = OlahHub(root / "hub")
        hub.start()
        env = {"VOX_HF_ENDPOINT": hub.url, "VOX_PULL_DEFAULTS": "0", "HF_HOME": str(root / "hf")}
        server = VoxServer(root / "home", root / "server.log", env=env)
        proxy = FaultProxy(hub.url, lambda path: "/resolve/" in path)
        # A second server on the same home (models, sandboxes) that reaches the hub through it.
        flaky_env = {**env, "VOX_HF_ENDPOINT": proxy.url}
        flaky = VoxServer(root / "home", root / "flaky.log", env=flaky_env)
        try:
            size, commit, names = seed(hub)
            proxy.warm(*(f"/{REPO}/resolve/{commit}/{name}" for name in names))
            server.start()
            with server.client() as client:
                body = {"name": MODEL, "source": f"hf://{REPO}", "adapter": "piper"}
                client.post("/api/register", json=body).raise_for_status()
            vox_pull(server)  # warm-up: builds the piper sandbox once, untimed
            bare_download(hub, root)
            vox_times, bare_times = [], []
            for _ in range(args.runs):  # alternate, so drift hits both sides alike
                vox_times.append(vox_pull(server)[0])
                bare_times.append(bare_download(hub, root))
            flaky.start()
            faults = faulty_pulls(flaky, proxy, size, args.runs)
        finally:
            for each in (server, flaky):
                if each.proc is not None:
                    each.stop()
            proxy.close()
            hub.stop()
    vox_med, bare_med = statistics.median(vox_times), statistics.median(bare_times)
    ratio = bare_med / vox_med  # throughput ratio: same bytes, so the inverse time ratio
    mb = size / 1e6
    print(f"pull of {mb:.0f} MB from a local olah hub, {args.runs} runs, medians")
    print(f"{'path':<28}{'seconds':>10}{'MB/s':>10}")
    print(f"{'vox /api/pull':<28}{vox_med:>10.2f}{mb / vox_med:>10.1f}")
    print(f"{'snapshot_download':<28}{bare_med:>10.2f}{mb / bare_med:>10.1f}")
    verdict = "ok" if ratio >= GOAL else "BELOW GOAL"
    print(f"throughput ratio vox/bare: {ratio:.3f} (goal >= {GOAL}) {verdict}")
    print(f"\nvox /api/pull through a fault proxy (drops per MiB sent), {args.runs} runs")
    print(f"{'drops':<8}{'seconds':>10}{'MB/s':>10}{'retries':>10}{'sent/size':>11}")
    for row in faults:
        overhead = statistics.median(row["bytes_sent"]) / size
        print(
            f"{row['drop_rate']:<8.0%}{row['median_s']:>10.2f}{row['mb_per_s']:>10.1f}"
            f"{statistics.median(row['retries']):>10.0f}{overhead:>11.3f}"
        )
    result: dict[str, Any] = {
        "benchmark": "pull",
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "bytes": size,
        "runs": args.runs,
        "vox_seconds": vox_times,
        "snapshot_download_seconds": bare_times,
        "median_vox_s": vox_med,
        "median_snapshot_s": bare_med,
        "throughput_ratio": ratio,
        "goal": GOAL,
        "faults": faults,
    }
    out = BENCH_DIR / "results" / f"pull-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()

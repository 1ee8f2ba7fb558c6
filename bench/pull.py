"""Pull throughput: a ~150 MB repo from a local hub through Vox vs a bare snapshot_download."""

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
from tests.hf.hub import CACHE, OlahHub  # noqa: E402

REPO = "vox-bench/pull-150mb"
MODEL = "bench:pull"
GOAL = 0.9  # Vox throughput / snapshot_download throughput, at least


def seed(hub: OlahHub) -> int:
    """Three LFS files, 150 MB in all, of incompressible bytes kept in the test cache."""
    blobs = CACHE / "bench-blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes | Path] = {"config.json": b'{"bench": true}'}
    for i, size in enumerate((90_000_000, 45_000_000, 15_000_000)):
        path = blobs / f"part{i}.bin"
        if not path.exists() or path.stat().st_size != size:
            path.write_bytes(os.urandom(size))
        files[f"weights/part{i}.bin"] = path
    hub.seed(REPO, files)
    return sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in files.values())


def vox_pull(server: VoxServer) -> float:
    """Seconds from POST /api/pull to the store commit (before the adapter sandbox step)."""
    with server.client() as client:
        client.request("DELETE", "/api/delete", json={"model": MODEL})
        started = time.perf_counter()
        elapsed = None
        with client.stream("POST", "/api/pull", json={"model": MODEL}) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if elapsed is None and str(event.get("status", "")).startswith("preparing"):
                    elapsed = time.perf_counter() - started
                if event.get("status") == "error":
                    raise RuntimeError(event)
        if elapsed is None:
            raise RuntimeError("the pull never reached the sandbox step")
        return elapsed


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
        try:
            size = seed(hub)
            server.start()
            with server.client() as client:
                body = {"name": MODEL, "source": f"hf://{REPO}", "adapter": "piper"}
                client.post("/api/register", json=body).raise_for_status()
            vox_pull(server)  # warm-up: builds the piper sandbox once, untimed
            bare_download(hub, root)
            vox_times, bare_times = [], []
            for _ in range(args.runs):  # alternate, so drift hits both sides alike
                vox_times.append(vox_pull(server))
                bare_times.append(bare_download(hub, root))
        finally:
            server.stop()
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
    }
    out = BENCH_DIR / "results" / f"pull-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()

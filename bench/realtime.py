"""Realtime benchmark: pipecat TTS protocol commit-to-first-delta and cancel latency.

Usage: ``uv run python bench/realtime.py [--url URL | --home DIR] [--runs N]``. With ``--url``
it measures a running server; otherwise it starts ``vox serve`` on a free loopback port
(``--home`` reuses a home whose models are pulled; default a fresh one that pulls them).

For piper:en-us-joe-medium and kokoro:v1.0-int8 (skipped when it cannot be pulled or loaded),
over ``/v1/realtime/tts`` on one connection (model warm, as a voice agent runs), N times each:

- first delta: ``input_text.commit`` sent -> first ``response.audio.delta`` received, for a
  one-sentence commit (the peers' ``ideal_words`` is about one sentence);
- cancel: ``response.cancel`` sent (right after the first delta of a long commit) ->
  ``response.cancelled`` received; the frames already in flight are read on the way.

As a reference it times Vox's own ``/v1/audio/speech/stream`` first binary frame for the same
sentence (ratio: realtime / native, goal at most 1.05). Prints a table and writes JSON to
bench/results/realtime-<UTC time>.json. Medians over N (default 20).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import VoxServer  # noqa: E402
from tests.streaming.helpers import SCRIPT  # noqa: E402

MODELS = ("piper:en-us-joe-medium", "kokoro:v1.0-int8")


def _until(ws: ClientConnection, kinds: set[str]) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=120))
        if event["type"] in kinds:
            return event


def realtime(url: str, model: str, runs: int) -> dict[str, Any]:
    ws_url = url.replace("http://", "ws://") + f"/v1/realtime/tts?model={model}"
    first: list[float] = []
    cancel: list[float] = []
    with connect(ws_url, open_timeout=600, max_size=None) as ws:
        hello = _until(ws, {"server.hello", "error"})
        if hello["type"] == "error":
            raise RuntimeError(hello["error"]["message"])
        for i in range(runs + 1):  # the first round warms the runner up
            ws.send(json.dumps({"type": "input_text.append", "text": SCRIPT[i % len(SCRIPT)]}))
            started = time.perf_counter()
            ws.send(json.dumps({"type": "input_text.commit"}))
            _until(ws, {"response.audio.delta"})
            took = time.perf_counter() - started
            _until(ws, {"response.audio.done"})
            if i:
                first.append(took)
        for _ in range(runs):
            ws.send(json.dumps({"type": "input_text.append", "text": " ".join(SCRIPT[:6])}))
            ws.send(json.dumps({"type": "input_text.commit"}))
            _until(ws, {"response.audio.delta"})
            started = time.perf_counter()
            ws.send(json.dumps({"type": "response.cancel"}))
            _until(ws, {"response.cancelled"})
            cancel.append(time.perf_counter() - started)
    return {
        "rate": hello["audio"]["rate"],
        "first_delta_s": statistics.median(first),
        "cancel_s": statistics.median(cancel),
        "first_delta_all": first,
        "cancel_all": cancel,
    }


def native(url: str, model: str, runs: int) -> float:
    """Vox's own WS stream: config, one sentence, end -> first binary frame (a fresh session)."""
    times: list[float] = []
    for i in range(runs + 1):
        with connect(url.replace("http://", "ws://") + "/v1/audio/speech/stream") as ws:
            ws.send(json.dumps({"type": "config", "model": model}))
            _until(ws, {"ready"})
            started = time.perf_counter()
            ws.send(json.dumps({"type": "text", "text": SCRIPT[i % len(SCRIPT)]}))
            ws.send(json.dumps({"type": "end"}))
            while not isinstance(ws.recv(timeout=120), bytes):
                pass
            if i:
                times.append(time.perf_counter() - started)
    return statistics.median(times)


def pulled(url: str, model: str) -> bool:
    with httpx.Client(base_url=url, timeout=1800) as client:
        response = client.post("/api/pull", json={"model": model})
    lines = [json.loads(x) for x in response.text.splitlines() if x.strip()]
    return response.status_code == 200 and bool(lines) and lines[-1].get("status") == "success"


def measure(url: str, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": runs, "models": {}}
    for model in MODELS:
        if not pulled(url, model):
            print(f"{model}: cannot be pulled here; skipped")
            continue
        try:
            row = realtime(url, model, runs)
        except Exception as exc:
            print(f"{model}: does not load here ({exc}); skipped")
            continue
        row["native_first_audio_s"] = native(url, model, runs)
        row["ratio"] = row["first_delta_s"] / row["native_first_audio_s"]
        results["models"][model] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--home", type=Path, help="a Vox home with the models pulled")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if args.url:
        results = measure(args.url.rstrip("/"), args.runs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            home = args.home or Path(tmp) / "home"
            server = VoxServer(home, Path(tmp) / "server.log")
            server.start()
            try:
                results = measure(server.url, args.runs)
            finally:
                server.stop()
    print(
        f"{'model':<26} {'rate':>6} {'first delta':>12} {'native WS':>10} "
        f"{'ratio':>6} {'cancel':>8}"
    )
    for model, row in results["models"].items():
        print(
            f"{model:<26} {row['rate']:>6} {row['first_delta_s'] * 1000:>10.1f}ms "
            f"{row['native_first_audio_s'] * 1000:>8.1f}ms {row['ratio']:>6.2f} "
            f"{row['cancel_s'] * 1000:>6.1f}ms"
        )
    out = ROOT / "bench" / "results" / f"realtime-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""What batching several transcription requests into one model call gives on this machine.

The runner answers concurrent transcriptions one after another (`bench/concurrency.py` gives
the server's requests/s at 1, 2, 4 and 8 clients). The alternative is faster-whisper's batched
pipeline fed whole requests: the clips' features stacked into one encoder call and one beam
search. This script measures both in the faster-whisper sandbox itself (`bench/inprocess.py`,
op ``batch``), alternating sequential and batched at each batch size, on 8 different 3.5-4.5 s
clips that the server synthesizes with piper, and reports requests/s medians, their ratio and
whether both ways produce the same words.

    uv run python bench/batching.py --home /path/to/vox/home --rounds 5

Prints a table and writes JSON to bench/results/batching-<stamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.concurrency import STT, TTS, ensure_models, server  # noqa: E402
from bench.overhead import Worker  # noqa: E402

SENTENCES = (
    "The old lighthouse stood at the edge of the cliff for more than a hundred years.",
    "Every morning the baker opened his shop before the sun came up over the hills.",
    "She packed her bags, locked the door, and walked slowly down to the station.",
    "The committee will meet again on Thursday to review the budget for next year.",
    "A small dog ran across the park chasing a bright red ball that rolled into the pond.",
    "Please remember to water the plants and feed the cat while we are away.",
    "The train to the city leaves at seven and arrives a little after nine.",
    "He wrote the letter twice before he finally decided to send it to his brother.",
)


def make_clips(home: Path, folder: Path) -> list[Path]:
    """One WAV per sentence, spoken by the server's piper voice (pulled if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"clip{i}.wav" for i in range(len(SENTENCES))]
    if all(path.exists() for path in paths):
        return paths
    with server(home, home.parent / "bench-batching.log", {}) as url:
        ensure_models(url)
        with httpx.Client(base_url=url, timeout=300) as client:
            for path, text in zip(paths, SENTENCES, strict=True):
                body = {"model": TTS, "input": text, "response_format": "wav"}
                response = client.post("/v1/audio/speech", json=body)
                response.raise_for_status()
                path.write_bytes(response.content)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("VOX_BENCH_HOME", "")))
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = args.home if str(args.home) not in ("", ".") else Path(tempfile.mkdtemp()) / "home"
    clips = [str(path) for path in make_clips(home, home.parent / "batching-clips")]
    family, tag = STT.split(":", 1)
    python = home / "sandboxes" / "faster-whisper" / "bin" / "python"
    sizes = [int(size) for size in args.sizes.split(",")]
    rows: list[dict[str, Any]] = []
    with (home.parent / "bench-batching-worker.log").open("w") as log_file:
        worker = Worker(python, "whisper", home / "models" / family / tag, log_file)
        try:
            for mode in ("sequential", "batched"):  # warm both paths
                worker.call(op="batch", paths=clips[:1], mode=mode)
            for size in sizes:
                paths = [clips[i % len(clips)] for i in range(size)]
                seconds: dict[str, list[float]] = {"sequential": [], "batched": []}
                texts: dict[str, list[str]] = {}
                for _ in range(args.rounds):
                    for mode in ("sequential", "batched"):
                        reply = worker.call(op="batch", paths=paths, mode=mode)
                        seconds[mode].append(reply["seconds"])
                        texts[mode] = reply["texts"]
                seq = statistics.median(seconds["sequential"])
                bat = statistics.median(seconds["batched"])
                rows.append(
                    {
                        "size": size,
                        "sequential_s": seconds["sequential"],
                        "batched_s": seconds["batched"],
                        "sequential_rps": size / seq,
                        "batched_rps": size / bat,
                        "speedup": seq / bat,
                        "same_words": _words(texts["sequential"]) == _words(texts["batched"]),
                    }
                )
        finally:
            worker.close()
    print(f"{'batch':>5} {'sequential req/s':>16} {'batched req/s':>13} {'speedup':>7} same words")
    for r in rows:
        print(
            f"{r['size']:>5} {r['sequential_rps']:>16.2f} {r['batched_rps']:>13.2f} "
            f"{r['speedup']:>6.2f}x {r['same_words']}"
        )
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result = {
        "bench": "batching",
        "commit": git.stdout.strip(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rounds": args.rounds,
        "rows": rows,
    }
    path = out / f"batching-{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


def _words(texts: list[str]) -> list[list[str]]:
    return [[w.strip(".,!?").lower() for w in text.split()] for text in texts]


if __name__ == "__main__":
    main()

"""Seam quality of streaming STT: words lost or doubled at window boundaries, on fresh recordings.

Usage: ``uv run python bench/seams.py [--home DIR] [--recordings N]``. Starts ``vox serve`` on a
free loopback port (``--home`` reuses a home whose models are pulled), then N times: makes the
~3-minute recording anew (piper's voice varies from take to take, and with it what Whisper hears
at each seam), streams it as pcm16 over ``/v1/audio/transcriptions/stream`` (30 s windows, 1 s
overlap) and checks every seam against the script:

- lost: a script word placed (by its position in its sentence's span) within 1 s of a cut that
  has no word spelled like it (difflib ratio >= 0.5) within 1.2 s of that place in the stream;
- doubled: a word the stream has more often within 1.5 s of a cut than the script within 2.5 s.

It counts the seams the server found suspect and transcribed again (its log) and the WER of
each transcript. Prints a table and writes JSON to bench/results/seams-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import difflib
import json
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.streaming import start_server, ws_transcribe_events  # noqa: E402
from tests.conftest import normalize, wer  # noqa: E402
from tests.streaming.helpers import SCRIPT, Recording, make_recording  # noqa: E402

CHUNK_S, OVERLAP_S = 30.0, 1.0


def script_words(recording: Recording) -> list[tuple[float, str]]:
    """Each script word at its estimated time: its place in the sentence's span (less the
    voice's lead-in and trailing silence), by characters."""
    out = []
    for sentence, (start, end) in zip(SCRIPT, recording.spans, strict=False):
        start, end = start + 0.25, end - 0.25
        position = 0
        for token in sentence.split():
            at = sentence.index(token, position)
            position = at + len(token)
            middle = (at + len(token) / 2) / len(sentence)
            if normalize(token):
                out.append((start + (end - start) * middle, normalize(token)))
    return out


def stream_words(segments: list[dict[str, Any]]) -> list[tuple[float, str]]:
    return [
        ((w["start"] + w["end"]) / 2, normalize(w["word"]))
        for s in segments
        for w in s["words"]
        if normalize(w["word"])
    ]


def _alike(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.5


def seam_faults(
    script: list[tuple[float, str]], stream: list[tuple[float, str]], cut: float
) -> dict[str, Any]:
    lost = [
        w
        for t, w in script
        if abs(t - cut) <= 1.0 and not any(_alike(w, m) for tm, m in stream if abs(tm - t) <= 1.2)
    ]
    near = Counter(w for t, w in stream if abs(t - cut) <= 1.5)
    expected = Counter(w for t, w in script if abs(t - cut) <= 2.5)
    doubled = [w for w, n in near.items() if n > max(expected[w], 1)]
    return {"cut": round(cut, 1), "lost": lost, "doubled": doubled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--recordings", type=int, default=5)
    args = parser.parse_args()
    server, _, ws_url = start_server(args.home, "seams")
    takes: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            for take in range(args.recordings):
                recording = make_recording(client)
                before = server.log().count("transcribed again")
                started = time.perf_counter()
                done = ws_transcribe_events(
                    ws_url, recording.pcm.tobytes(), recording.rate, word_timestamps=True
                )
                wall = time.perf_counter() - started
                script, stream = script_words(recording), stream_words(done["segments"])
                cuts, cut = [], CHUNK_S - OVERLAP_S / 2
                while cut < recording.seconds - OVERLAP_S:
                    cuts.append(cut)
                    cut += CHUNK_S - OVERLAP_S
                faults = [seam_faults(script, stream, c) for c in cuts]
                takes.append(
                    {
                        "seconds": recording.seconds,
                        "wall_s": wall,
                        "seams": len(cuts),
                        "suspect": server.log().count("transcribed again") - before,
                        "wer": wer(" ".join(SCRIPT), done["text"]),
                        "faults": [f for f in faults if f["lost"] or f["doubled"]],
                    }
                )
                print(f"take {take + 1}/{args.recordings}: {takes[-1]}", file=sys.stderr)
    finally:
        server.stop()
    seams = sum(t["seams"] for t in takes)
    lost = sum(1 for t in takes for f in t["faults"] if f["lost"])
    doubled = sum(1 for t in takes for f in t["faults"] if f["doubled"])
    summary = {
        "recordings": len(takes),
        "seams": seams,
        "suspect_seams": sum(t["suspect"] for t in takes),
        "seams_with_a_lost_word": lost,
        "seams_with_a_doubled_word": doubled,
        "wer_median": statistics.median(t["wer"] for t in takes),
        "takes": takes,
    }
    print(f"{'metric':<40}{'value':>10}")
    for key in ("recordings", "seams", "suspect_seams"):
        print(f"{key.replace('_', ' '):<40}{summary[key]:>10}")
    print(f"{'seams with a lost word':<40}{lost:>10}")
    print(f"{'seams with a doubled word':<40}{doubled:>10}")
    print(f"{'WER (median)':<40}{summary['wer_median']:>10.3f}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"seams-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Seam quality of streaming STT: words lost or doubled at window boundaries, on fresh recordings.

Usage: ``uv run python bench/seams.py [--home DIR] [--recordings N] [--vad]``. Starts ``vox serve``
on a free loopback port (``--home`` reuses a home whose models are pulled), then N times: makes
the ~3-minute recording anew (piper's voice varies from take to take, and with it what Whisper
hears at each seam), streams it as pcm16 over ``/v1/audio/transcriptions/stream`` (30 s windows,
1 s overlap) and checks every seam against the script. With ``--vad`` each take is streamed a
second time with ``vad: true`` (windows cut in the pauses the VAD model hears; its seams are the
windows' ends), so the two modes are compared on the same audio.

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
    parser.add_argument("--vad", action="store_true", help="also stream each take with vad: true")
    args = parser.parse_args()
    server, _, ws_url = start_server(args.home, "seams")
    modes = ["fixed", "vad"] if args.vad else ["fixed"]
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            if args.vad:
                body = {"model": "silero-vad:v6", "stream": False}
                client.post("/api/pull", json=body).raise_for_status()
            for take in range(args.recordings):
                recording = make_recording(client)
                for mode in modes:
                    runs[mode].append(stream_take(server, ws_url, recording, mode == "vad"))
                    print(f"take {take + 1} {mode}: {runs[mode][-1]}", file=sys.stderr)
    finally:
        server.stop()
    result = {mode: summarize(takes) for mode, takes in runs.items()}
    keys = ("recordings", "seams", "suspect_seams")
    keys += ("seams_with_a_lost_word", "seams_with_a_doubled_word", "wer_median", "wall_s_median")
    print(f"{'metric':<40}" + "".join(f"{mode:>10}" for mode in modes))
    for key in keys:
        cells = "".join(
            f"{result[m][key]:>10.3f}"
            if key in ("wer_median", "wall_s_median")
            else f"{result[m][key]:>10}"
            for m in modes
        )
        print(f"{key.replace('_', ' '):<40}{cells}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"seams-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result if args.vad else result["fixed"], indent=2))
    print(f"wrote {path}")


def stream_take(server: Any, ws_url: str, recording: Recording, vad: bool) -> dict[str, Any]:
    """One take through the stream; its seams checked against the script."""
    before = server.log().count("transcribed again")
    started = time.perf_counter()
    done = ws_transcribe_events(
        ws_url, recording.pcm.tobytes(), recording.rate, word_timestamps=True, vad=vad
    )
    wall = time.perf_counter() - started
    script, stream = script_words(recording), stream_words(done["segments"])
    if vad:  # a window after a pause starts at the previous one's end
        cuts = done["window_ends"][:-1]
    else:
        cuts, cut = [], CHUNK_S - OVERLAP_S / 2
        while cut < recording.seconds - OVERLAP_S:
            cuts.append(cut)
            cut += CHUNK_S - OVERLAP_S
    faults = [seam_faults(script, stream, c) for c in cuts]
    return {
        "seconds": recording.seconds,
        "wall_s": wall,
        "seams": len(cuts),
        "windows": len(done["window_ends"]),
        "suspect": server.log().count("transcribed again") - before,
        "wer": wer(" ".join(SCRIPT), done["text"]),
        "faults": [f for f in faults if f["lost"] or f["doubled"]],
    }


def summarize(takes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "recordings": len(takes),
        "seams": sum(t["seams"] for t in takes),
        "suspect_seams": sum(t["suspect"] for t in takes),
        "seams_with_a_lost_word": sum(1 for t in takes for f in t["faults"] if f["lost"]),
        "seams_with_a_doubled_word": sum(1 for t in takes for f in t["faults"] if f["doubled"]),
        "wer_median": statistics.median(t["wer"] for t in takes),
        "wall_s_median": statistics.median(t["wall_s"] for t in takes),
        "takes": takes,
    }


if __name__ == "__main__":
    main()

"""Wyoming benchmark: one Vox against wyoming-faster-whisper + wyoming-piper from PyPI.

Usage: ``uv run python bench/wyoming.py [--home DIR] [--venvs DIR] [--runs N]``.

- Vox: ``vox serve --wyoming tcp://127.0.0.1:P`` on ``--home`` (default /tmp/vox-bench-wyoming;
  whisper:tiny.en and piper:en-us-joe-medium are pulled there when missing).
- Peers: wyoming-faster-whisper and wyoming-piper, each in its own venv made here with
  ``uv venv`` + ``uv pip install`` (under ``--venvs``, reused when present), pointed at the model
  files Vox installed (``--model <store>/whisper/tiny.en --local-files-only``;
  ``--data-dir <store>/piper/en-us-joe-medium --voice en_US-joe-medium``): same weights, same
  beam size (5), int8 on CPU, no network but PyPI.
- The recording: four sentences spoken by piper joe through Vox's HTTP API (about 16 s, 22.05 kHz
  16-bit mono), sent in 1024-sample chunks as Home Assistant does. The text: two sentences.
- Per run, alternating which server goes first: time to transcript (audio-stop sent ->
  ``transcript`` received) and time to first audio (``synthesize`` sent -> first ``audio-chunk``),
  each through the wyoming package's AsyncTcpClient on a fresh connection, as Home Assistant
  connects per request. After the runs (both models loaded in Vox): RSS of the Vox server and its
  runners against the two peers' processes together (/proc VmRSS of each process tree).

Prints a table and writes JSON to bench/results/wyoming-<UTC time>.json. Medians over N
(default 15) after one warm-up request each.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import soundfile as sf

# Run as a script, this file's folder leads sys.path and its name would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.event import Event  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.tts import Synthesize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import VoxServer, free_port, wer  # noqa: E402
from tests.streaming.helpers import SCRIPT  # noqa: E402

STT, TTS = "whisper:tiny.en", "piper:en-us-joe-medium"
PEERS = {"faster-whisper": "wyoming-faster-whisper==3.8.1", "piper": "wyoming-piper==2.5.2"}
CLIP_TEXT = " ".join(SCRIPT[:4])
SPEAK_TEXT = " ".join(SCRIPT[4:6])
TIMEOUT = 300.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- processes


def venv(root: Path, name: str, requirement: str) -> Path:
    """The peer's own venv (made once): its console script."""
    where = root / name
    script = where / "bin" / f"wyoming-{name}"
    if not script.exists():
        log(f"installing {requirement} into {where}")
        subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(where)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(where / "bin" / "python"), requirement],
            check=True,
        )
    return script


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024


def tree_rss_mb(pid: int) -> float:
    """VmRSS of a process and all its descendants, in MB."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            rss = next(line for line in status.splitlines() if line.startswith("VmRSS"))
            total += int(rss.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, StopIteration):
            continue
    return total / 1024


async def wait_ready(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            async with AsyncTcpClient("127.0.0.1", port) as c:
                await c.write_event(Describe().event())
                while (event := await asyncio.wait_for(c.read_event(), 10)) is not None:
                    if Info.is_type(event.type):
                        return
        except (OSError, TimeoutError):
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{name} did not answer describe")


# ---------------------------------------------------------------------- requests


async def transcribe(port: int, pcm: bytes, rate: int, name: str | None) -> tuple[float, str]:
    async with AsyncTcpClient("127.0.0.1", port) as c:
        await c.write_event(Transcribe(name=name, language="en").event())
        await c.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        step = 1024 * 2
        for i in range(0, len(pcm), step):
            chunk = AudioChunk(rate=rate, width=2, channels=1, audio=pcm[i : i + step])
            await c.write_event(chunk.event())
        await c.write_event(AudioStop().event())
        started = time.perf_counter()
        event = await _until(c, Transcript.is_type)
        return time.perf_counter() - started, Transcript.from_event(event).text


async def synthesize(port: int, text: str) -> tuple[float, float, int]:
    """Time to the first audio chunk, to audio-stop, and the bytes of audio."""
    async with AsyncTcpClient("127.0.0.1", port) as c:
        started = time.perf_counter()
        await c.write_event(Synthesize(text=text).event())
        first, size = 0.0, 0
        while True:
            event = await _until(c, lambda t: AudioChunk.is_type(t) or AudioStop.is_type(t))
            if AudioStop.is_type(event.type):
                return first, time.perf_counter() - started, size
            if not first:
                first = time.perf_counter() - started
            size += len(event.payload or b"")


async def _until(c: AsyncTcpClient, done: Any) -> Event:
    while True:
        event = await asyncio.wait_for(c.read_event(), TIMEOUT)
        if event is None:
            raise RuntimeError("the server closed the connection")
        if event.type == "error":
            raise RuntimeError(f"error event: {event.data}")
        if done(event.type):
            return event


# ---------------------------------------------------------------------- the run


def ensure_pulled(server: VoxServer) -> None:
    with server.client() as http:
        for name in (STT, TTS):
            with http.stream("POST", "/api/pull", json={"model": name}) as response:
                lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
            if lines[-1].get("status") != "success":
                raise RuntimeError(f"pull {name}: {lines[-1]}")


def make_clip(server: VoxServer, text: str = CLIP_TEXT) -> tuple[bytes, int]:
    with server.client() as http:
        response = http.post(
            "/api/synthesize", json={"model": TTS, "input": text, "response_format": "wav"}
        )
        response.raise_for_status()
    pcm, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    return pcm.tobytes(), int(rate)


def whisper_command(home: Path, venvs: Path, port: int) -> list[str]:
    """wyoming-faster-whisper on Vox's tiny.en files: int8 on CPU, beam 5, English."""
    fw_data = venvs / "fw-data"
    fw_data.mkdir(parents=True, exist_ok=True)
    return [
        str(venv(venvs, "faster-whisper", PEERS["faster-whisper"])),
        "--uri", f"tcp://127.0.0.1:{port}", "--model", str(home / "models" / "whisper" / "tiny.en"),
        "--data-dir", str(fw_data), "--local-files-only", "--device", "cpu",
        "--compute-type", "int8", "--beam-size", "5", "--language", "en",
    ]  # fmt: skip


def piper_command(home: Path, venvs: Path, port: int) -> list[str]:
    """wyoming-piper on Vox's joe medium voice files."""
    return [
        str(venv(venvs, "piper", PEERS["piper"])),
        "--uri", f"tcp://127.0.0.1:{port}", "--voice", "en_US-joe-medium",
        "--data-dir", str(home / "models" / "piper" / "en-us-joe-medium"), "--local-files-only",
    ]  # fmt: skip


def measure(args: argparse.Namespace, vox: VoxServer, vox_port: int) -> dict[str, Any]:
    fw_port, piper_port = free_port(), free_port()
    whisper_cmd = whisper_command(args.home, args.venvs, fw_port)
    piper_cmd = piper_command(args.home, args.venvs, piper_port)
    logs = (args.venvs / "peers.log").open("ab")
    peers = [
        subprocess.Popen(cmd, stdout=logs, stderr=subprocess.STDOUT)
        for cmd in (whisper_cmd, piper_cmd)
    ]
    try:
        return asyncio.run(compare(args, vox, (vox_port, fw_port, piper_port), peers))
    finally:
        for p in peers:
            p.terminate()
        for p in peers:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


async def compare(
    args: argparse.Namespace,
    vox: VoxServer,
    ports: tuple[int, int, int],
    peers: list[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    vox_port, fw_port, piper_port = ports
    await wait_ready(fw_port, peers[0], "wyoming-faster-whisper")
    await wait_ready(piper_port, peers[1], "wyoming-piper")
    pcm, rate = make_clip(vox)
    log(f"clip: {len(pcm) / 2 / rate:.1f} s at {rate} Hz; {args.runs} runs")
    # (STT port, TTS port, the transcribe event's model name)
    sides: dict[str, tuple[int, int, str | None]] = {
        "vox": (vox_port, vox_port, STT),
        "peers": (fw_port, piper_port, None),
    }
    results: dict[str, dict[str, list[float]]] = {
        side: {"transcript_s": [], "first_audio_s": [], "synthesis_s": [], "wer": []}
        for side in sides
    }
    for i in range(args.runs + 1):  # the first round warms both up
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for side in order:
            stt_port, tts_port, name = sides[side]
            took, text = await transcribe(stt_port, pcm, rate, name)
            first, whole, _ = await synthesize(tts_port, SPEAK_TEXT)
            if i:
                results[side]["transcript_s"].append(took)
                results[side]["first_audio_s"].append(first)
                results[side]["synthesis_s"].append(whole)
                results[side]["wer"].append(wer(CLIP_TEXT, text))
    with vox.client() as http:
        loaded = sorted(m["name"] for m in http.get("/api/ps").json()["models"])
    assert vox.proc is not None
    memory = {
        "vox_mb": tree_rss_mb(vox.proc.pid),
        "vox_server_alone_mb": rss_mb(vox.proc.pid),
        "vox_loaded": loaded,
        "peers_mb": sum(tree_rss_mb(p.pid) for p in peers),
        "faster_whisper_mb": tree_rss_mb(peers[0].pid),
        "piper_mb": tree_rss_mb(peers[1].pid),
    }
    return {"samples": results, "memory": memory, "clip_seconds": len(pcm) / 2 / rate}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    samples = result["samples"]
    med = {
        side: {k: statistics.median(v) for k, v in values.items()}
        for side, values in samples.items()
    }
    memory = result["memory"]
    return {
        "median": med,
        "ratio": {k: med["vox"][k] / med["peers"][k] for k in ("transcript_s", "first_audio_s")},
        "memory_ratio": memory["vox_mb"] / memory["peers_mb"],
    }


def table(result: dict[str, Any], summary: dict[str, Any]) -> str:
    med, memory = summary["median"], result["memory"]
    rows = [
        ("time to transcript (s)", "transcript_s", 1.05),
        ("time to first audio (s)", "first_audio_s", 1.05),
        ("whole synthesis (s)", "synthesis_s", None),
        ("WER of the transcript", "wer", None),
    ]
    lines = [f"{'metric':<26}{'vox':>10}{'peers':>10}{'ratio':>8}  goal"]
    for label, key, goal in rows:
        v, p = med["vox"][key], med["peers"][key]
        ratio = f"{v / p:.2f}" if p else "-"
        lines.append(f"{label:<26}{v:>10.3f}{p:>10.3f}{ratio:>8}  {f'<= {goal}' if goal else ''}")
    lines.append(
        f"{'RSS, both models (MB)':<26}{memory['vox_mb']:>10.0f}{memory['peers_mb']:>10.0f}"
        f"{summary['memory_ratio']:>8.2f}  <= 1.00"
    )
    lines.append(f"  (vox server process alone: {memory['vox_server_alone_mb']:.0f} MB)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    args.home.mkdir(parents=True, exist_ok=True)
    args.venvs.mkdir(parents=True, exist_ok=True)
    vox_port = free_port()
    vox = VoxServer(
        args.home,
        args.venvs / "vox.log",
        env={"VOX_WYOMING": f"tcp://127.0.0.1:{vox_port}", "VOX_DEVICE": "cpu"},
    )
    vox.start()
    try:
        ensure_pulled(vox)
        return measure(args, vox, vox_port)
    finally:
        vox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/vox-bench-wyoming/home"))
    parser.add_argument("--venvs", type=Path, default=Path("/tmp/vox-bench-wyoming/peers"))
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    result = run(args)
    summary = summarize(result)
    print(table(result, summary))
    out = ROOT / "bench" / "results" / f"wyoming-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    record = {
        **result,
        "summary": summary,
        "runs": args.runs,
        "peers": PEERS,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

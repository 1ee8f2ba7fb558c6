"""Cold start: `vox serve` from the README's command against the Wyoming peers from PyPI.

Usage: ``uv run python bench/startup.py [--home DIR] [--venvs DIR] [--runs N] [--no-peers]``.

Each side is started anew as a process, timed from ``Popen`` (the clock before it):

- port open: the TCP port accepts a connection (polled every 5 ms);
- first transcription answered: the transcript of a one-sentence clip (~5 s, Vox's own voice)
  is back (Vox: ``POST /v1/audio/transcriptions``; wyoming-faster-whisper: ``transcribe``);
- first speech answered: the whole audio of a two-sentence text is back (Vox: ``POST
  /v1/audio/speech`` as wav; wyoming-piper: ``synthesize`` to ``audio-stop``);
- idle RSS after serving one of each, of the whole process tree (Vox: the server and its
  runners, ``uv run`` itself left out and reported apart; peers: both servers together),
  and of the Vox control plane alone.

Vox is started twice per run (transcription first, then speech first: neither first request
waits behind the other); its RSS is taken after the second, which served both. The peers:
wyoming-faster-whisper 3.8.1 (tiny.en int8 beam 5) and wyoming-piper 2.5.2 (joe medium), in the
venvs ``bench/wyoming.py`` makes, on the model files Vox installed. Vox and the peers alternate
which goes first; one untimed start of each comes first (bytecode written, files cached).
Prints a table of medians and writes JSON to bench/results/startup-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wyoming import (  # noqa: E402
    PEERS,
    SPEAK_TEXT,
    STT,
    TTS,
    ensure_pulled,
    make_clip,
    piper_command,
    rss_mb,
    synthesize,
    transcribe,
    tree_rss_mb,
    whisper_command,
)
from tests.conftest import VoxServer, free_port  # noqa: E402
from tests.streaming.helpers import SCRIPT  # noqa: E402

IDLE_S = 2.0  # settle time before RSS is read: freed buffers returned, threads parked


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def child_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment both sides start in: bytecode written and read, as on a user's machine,
    unless --no-bytecode keeps PYTHONDONTWRITEBYTECODE (every start then compiles every module,
    ~1 s for Vox)."""
    if args.no_bytecode:
        return dict(os.environ)
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wait_port(port: int, proc: subprocess.Popen[bytes], started: float) -> float:
    """Seconds from ``started`` until the port accepts a connection."""
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return time.perf_counter() - started
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}") from None
            time.sleep(0.005)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def vox_tree_mb(proc: subprocess.Popen[bytes]) -> dict[str, float]:
    """The server's tree without the ``uv run`` launcher above it, the launcher, the server."""
    tasks = Path(f"/proc/{proc.pid}/task").iterdir()
    children = [c for t in tasks for c in (t / "children").read_text().split()]
    launcher = Path(f"/proc/{proc.pid}/comm").read_text().strip() == "uv" and len(children) == 1
    server = int(children[0]) if launcher else proc.pid
    return {
        "tree_mb": tree_rss_mb(server),
        "server_mb": rss_mb(server),
        "launcher_mb": rss_mb(proc.pid) if launcher else 0.0,
    }


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


# ---------------------------------------------------------------------- one start of each side


def vox_start(args: argparse.Namespace, wav: bytes, first: str) -> dict[str, float]:
    """One `vox serve`: port open, then ``first`` (stt or tts) answered, then the other."""
    port = free_port()
    env = {**child_env(args), "VOX_HOME": str(args.home), "VOX_DEVICE": "cpu"}
    logs = (args.venvs / "vox-startup.log").open("ab")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*args.command, "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=logs,
        stderr=subprocess.STDOUT,
    )
    try:
        out = {"port_open_s": wait_port(port, proc, started)}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:

            def stt() -> None:
                files = {"file": ("clip.wav", wav, "audio/wav")}
                r = http.post("/v1/audio/transcriptions", files=files, data={"model": STT})
                r.raise_for_status()
                out["transcription_s"] = time.perf_counter() - started

            def tts() -> None:
                body = {"model": TTS, "input": SPEAK_TEXT, "response_format": "wav"}
                http.post("/v1/audio/speech", json=body).raise_for_status()
                out["speech_s"] = time.perf_counter() - started

            for step in (stt, tts) if first == "stt" else (tts, stt):
                step()
        time.sleep(IDLE_S)
        out.update(vox_tree_mb(proc))
        return out
    finally:
        stop(proc)


def peer_start(
    command: Callable[[Path, Path, int], list[str]],
    request: Callable[[int], Any],
    args: argparse.Namespace,
) -> tuple[dict[str, float], subprocess.Popen[bytes]]:
    """Start one peer, time port open and its first answer; it is left running."""
    port = free_port()
    cmd = command(args.home, args.venvs, port)
    logs = (args.venvs / "peers.log").open("ab")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=child_env(args), stdout=logs, stderr=subprocess.STDOUT)
    try:
        out = {"port_open_s": wait_port(port, proc, started)}
        asyncio.run(request(port))
        out["answered_s"] = time.perf_counter() - started
        return out, proc
    except BaseException:
        stop(proc)
        raise


def peers_start(args: argparse.Namespace, pcm: bytes, rate: int) -> dict[str, float]:
    def stt(port: int) -> Any:
        return transcribe(port, pcm, rate, None)

    def tts(port: int) -> Any:
        return synthesize(port, SPEAK_TEXT)

    whisper, fw = peer_start(whisper_command, stt, args)
    try:
        piper, pp = peer_start(piper_command, tts, args)
    except BaseException:
        stop(fw)
        raise
    try:
        time.sleep(IDLE_S)
        return {
            "whisper_port_open_s": whisper["port_open_s"],
            "piper_port_open_s": piper["port_open_s"],
            "transcription_s": whisper["answered_s"],
            "speech_s": piper["answered_s"],
            "tree_mb": tree_rss_mb(fw.pid) + tree_rss_mb(pp.pid),
            "whisper_mb": tree_rss_mb(fw.pid),
            "piper_mb": tree_rss_mb(pp.pid),
        }
    finally:
        stop(fw)
        stop(pp)


# ---------------------------------------------------------------------- the run


def prepare(args: argparse.Namespace) -> tuple[bytes, int]:
    """Models pulled into ``--home`` (once) and the clip made by Vox's own voice."""
    args.home.mkdir(parents=True, exist_ok=True)
    args.venvs.mkdir(parents=True, exist_ok=True)
    server = VoxServer(args.home, args.venvs / "vox-startup.log", env={"VOX_DEVICE": "cpu"})
    server.start()
    try:
        ensure_pulled(server)
        return make_clip(server, SCRIPT[0])
    finally:
        server.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    pcm, rate = prepare(args)
    wav = wav_bytes(pcm, rate)
    log(f"clip {len(pcm) / 2 / rate:.1f} s; warm-up, then {args.runs} runs")
    samples: dict[str, list[dict[str, float]]] = {"vox_stt": [], "vox_tts": [], "peers": []}

    def vox() -> None:
        samples["vox_stt"].append(vox_start(args, wav, "stt"))
        samples["vox_tts"].append(vox_start(args, wav, "tts"))

    def peers() -> None:
        samples["peers"].append(peers_start(args, pcm, rate))

    sides = [vox] + ([] if args.no_peers else [peers])
    for side in sides:  # warm-up: bytecode, page cache
        side()
    for rows in samples.values():
        rows.clear()
    for i in range(args.runs):
        for side in sides if i % 2 == 0 else sides[::-1]:
            side()
        log(f"run {i + 1}/{args.runs} done")
    return {"samples": samples, "clip_seconds": len(pcm) / 2 / rate}


def summarize(samples: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows) if rows else float("nan")

    vox_all = samples["vox_stt"] + samples["vox_tts"]
    peers = samples["peers"]
    return {
        "vox": {
            "port_open_s": med(vox_all, "port_open_s"),
            "transcription_s": med(samples["vox_stt"], "transcription_s"),
            "speech_s": med(samples["vox_tts"], "speech_s"),
            "tree_mb": med(samples["vox_tts"], "tree_mb"),
            "server_mb": med(samples["vox_tts"], "server_mb"),
            "launcher_mb": med(samples["vox_tts"], "launcher_mb"),
        },
        "peers": {
            "port_open_s": med(peers, "whisper_port_open_s"),
            "piper_port_open_s": med(peers, "piper_port_open_s"),
            "transcription_s": med(peers, "transcription_s"),
            "speech_s": med(peers, "speech_s"),
            "tree_mb": med(peers, "tree_mb"),
        },
    }


def table(summary: dict[str, dict[str, float]]) -> str:
    vox, peers = summary["vox"], summary["peers"]
    rows = [
        ("start -> port open (s)", "port_open_s", "<= 1.0"),
        ("start -> transcription (s)", "transcription_s", "<= peer + 0.2"),
        ("start -> speech (s)", "speech_s", "<= peer + 0.2"),
        ("idle RSS, tree (MB)", "tree_mb", "<= peer"),
    ]
    lines = [f"{'metric':<28}{'vox':>9}{'peers':>9}  goal"]
    for label, key, goal in rows:
        lines.append(f"{label:<28}{vox[key]:>9.3f}{peers[key]:>9.3f}  {goal}")
    lines.append(f"{'control plane RSS (MB)':<28}{vox['server_mb']:>9.1f}{'':>9}  <= 90")
    lines.append(
        f"  (peers' port: whisper {peers['port_open_s']:.3f} s, piper "
        f"{peers['piper_port_open_s']:.3f} s; `uv run` itself {vox['launcher_mb']:.0f} MB, "
        "left out of the tree)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/vox-bench-wyoming/home"))
    parser.add_argument("--venvs", type=Path, default=Path("/tmp/vox-bench-wyoming/peers"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="Vox only")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE from the environment (compile at every start)",
    )
    parser.add_argument(
        "--command",
        nargs="+",
        default=["uv", "run", "vox", "serve"],
        help="how Vox is started (default: the README's `uv run vox serve`)",
    )
    args = parser.parse_args()
    result = run(args)
    summary = summarize(result["samples"])
    print(table(summary))
    out = ROOT / "bench" / "results" / f"startup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    record = {
        **result,
        "summary": summary,
        "runs": args.runs,
        "command": args.command,
        "peers": PEERS,
        "bytecode": not args.no_bytecode,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load": os.getloadavg(),
        },
    }
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

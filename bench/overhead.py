"""Measure what the Vox server adds over in-process inference with the same model and settings."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORKER = BENCH_DIR / "inprocess.py"

STT_MODEL = "whisper:tiny.en"
TTS_MODEL = "piper:en-us-joe-medium"
CLIP_SECONDS = (30.0, 60.0)
STREAM_HEADER_BYTES = 44  # the server's streamed WAV header (RIFF + fmt + data, no extras)

# Read aloud by piper to make the transcription clip (about 45 s of speech).
CLIP_SCRIPT = (
    "The old lighthouse stood at the edge of the cliff for more than a hundred years. "
    "Every evening the keeper climbed the narrow stairs, polished the great lens, and lit "
    "the lamp before the sun went down. Ships passing in the night trusted that steady "
    "light to guide them past the rocks. One winter a terrible storm knocked out the power "
    "across the whole coast. The keeper found an oil lantern in the cellar and carried it "
    "to the top of the tower. He kept it burning until morning, and not a single ship was "
    "lost. Today the lighthouse is a small museum, and children still ask to climb the "
    "stairs and see the lens for themselves. The guides tell them the story of that night, "
    "and most of them remember it for the rest of their lives."
)

# Synthesized in the timed runs (about 400 characters, six sentences).
PARAGRAPH = (
    "Good morning, and welcome to the weekly project update. The build server was moved to "
    "the new data center on Tuesday, and every test passed on the first try. Next week we "
    "will focus on speeding up the audio pipeline, which still spends too much time copying "
    "buffers. Please send your questions before Thursday. Thank you all for the careful work "
    "on the release. We will meet again next Monday at ten."
)

GOALS = {"transcription": 1.02, "synthesis": 1.03, "first_audio": 1.05}
LABELS = {
    "transcription": "transcription (full request)",
    "synthesis": "synthesis (to last byte)",
    "first_audio": "time to first audio",
}


# ----------------------------------------------------------------------------- options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, help="Vox home to use (default: a fresh temp dir)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side (default 5)")
    parser.add_argument("--port", type=int, help="server port (default: a free loopback port)")
    parser.add_argument("--out", type=Path, help="JSON results path")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (home, clip, log)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        args.out = BENCH_DIR / "results" / f"overhead-{stamp}.json"
    return args


def log(message: str) -> None:
    print(f"[overhead] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sandbox_env() -> dict[str, str]:
    """The environment a sandbox interpreter should see: none of the root venv's settings."""
    env = dict(os.environ)
    for var in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"):
        env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ----------------------------------------------------------------------------- server


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    runner_pids: set[int] = field(default_factory=set)


def start_server(home: Path, port: int, log_path: Path) -> Server:
    command = [sys.executable, "-m", "vox_cli.main", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--device", "cpu", "--keep-alive", "30m"]
    env = dict(os.environ, VOX_HOME=str(home))
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(process, f"http://127.0.0.1:{port}", log_path)


def wait_healthy(client: httpx.Client, server: Server, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if client.get("/api/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server was not healthy after {timeout:.0f} s")


def pull(client: httpx.Client, name: str) -> None:
    """POST /api/pull and follow its NDJSON events to the final success (or error)."""
    last: dict[str, Any] = {}
    with client.stream("POST", "/api/pull", json={"model": name}, timeout=900) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.strip():
                last = json.loads(line)
    if last.get("status") != "success":
        raise RuntimeError(f"pull {name} did not succeed: {last}")


def loaded_models(client: httpx.Client) -> dict[str, dict[str, Any]]:
    response = client.get("/api/ps")
    response.raise_for_status()
    return {m["name"]: m for m in response.json()["models"]}


def stop_server(server: Server) -> list[int]:
    """SIGTERM the server, then make sure it and its runners are gone; returns any killed late."""
    if server.process.poll() is None:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            # Runners it started since we last asked (say, a run that failed half way).
            models = httpx.get(f"{server.url}/api/ps", timeout=5).json()["models"]
            server.runner_pids |= {int(m["pid"]) for m in models}
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log("server ignored SIGTERM for 20 s: killing it")
            server.process.kill()
            server.process.wait()
    return reap_runners(server.runner_pids)


def reap_runners(pids: set[int], grace: float = 10.0) -> list[int]:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.1)
    leftover = [pid for pid in pids if pid_alive(pid)]
    for pid in leftover:
        log(f"runner {pid} outlived the server: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftover


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; it holds no resources but is not "left running".
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


# ----------------------------------------------------------------------------- server timings


@dataclass
class SpeechSample:
    seconds: float
    first_byte_s: float
    first_audio_s: float
    body: bytes


def server_speech(client: httpx.Client, text: str) -> SpeechSample:
    body = {"model": TTS_MODEL, "input": text, "response_format": "wav"}
    pieces: list[bytes] = []
    received = 0
    first_byte = first_audio = None
    started = time.perf_counter()
    with client.stream("POST", "/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        for piece in response.iter_raw():
            now = time.perf_counter() - started
            received += len(piece)
            pieces.append(piece)
            first_byte = now if first_byte is None else first_byte
            if first_audio is None and received > STREAM_HEADER_BYTES:
                first_audio = now
    seconds = time.perf_counter() - started
    if first_byte is None or first_audio is None:
        raise RuntimeError("the speech response carried no audio")
    return SpeechSample(seconds, first_byte, first_audio, b"".join(pieces))


def server_transcription(client: httpx.Client, wav: bytes) -> dict[str, Any]:
    files = {"file": ("clip.wav", wav, "audio/wav")}
    started = time.perf_counter()
    response = client.post("/v1/audio/transcriptions", files=files, data={"model": STT_MODEL})
    seconds = time.perf_counter() - started
    response.raise_for_status()
    processing = response.headers.get("X-Processing-Ms")
    return {
        "seconds": seconds,
        "processing_s": int(processing) / 1000 if processing else None,
        "text": response.json()["text"],
    }


# ----------------------------------------------------------------------------- the clip


def parse_stream_wav(data: bytes) -> tuple[int, int, bytes]:
    """(sample rate, channels, PCM16 data) of a WAV whose sizes may be 0xFFFFFFFF (streamed)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV stream")
    offset, rate, channels = 12, 0, 0
    while offset + 8 <= len(data):
        chunk_id, size = (
            data[offset : offset + 4],
            struct.unpack("<I", data[offset + 4 : offset + 8])[0],
        )
        body = offset + 8
        if chunk_id == b"fmt ":
            fmt, channels, rate = struct.unpack("<HHI", data[body : body + 8])
            bits = struct.unpack("<H", data[body + 14 : body + 16])[0]
            if fmt != 1 or bits != 16:
                raise ValueError(f"expected PCM16, got format {fmt} with {bits} bits")
        elif chunk_id == b"data":
            # A streamed WAV's data size is unknown: the data runs to the end of the body.
            end = len(data) if size == 0xFFFFFFFF else body + size
            return rate, channels, data[body:end]
        offset = body + size + (size & 1)
    raise ValueError("no data chunk in the WAV stream")


def build_clip(client: httpx.Client, path: Path) -> float:
    """Synthesize CLIP_SCRIPT through the server, save it as a plain WAV; returns its seconds."""
    sample = server_speech(client, CLIP_SCRIPT)
    rate, channels, pcm = parse_stream_wav(sample.body)
    duration = len(pcm) / (rate * channels * 2)
    if not CLIP_SECONDS[0] <= duration <= CLIP_SECONDS[1]:
        raise RuntimeError(f"the clip is {duration:.1f} s, outside {CLIP_SECONDS}")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    with wave.open(str(path), "rb") as check:
        written = check.getnframes() / check.getframerate()
    if abs(written - duration) > 1e-3:
        raise RuntimeError(f"the written clip is {written:.3f} s, expected {duration:.3f} s")
    return duration


# ----------------------------------------------------------------------------- in-process worker


class Worker:
    """One long-lived sandbox interpreter running bench/inprocess.py with the model loaded."""

    def __init__(self, python: Path, kind: str, model_dir: Path, log_file: TextIO) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [str(python), str(WORKER), kind, str(model_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=sandbox_env(),
            text=True,
            bufsize=1,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} worker exited ({self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.kind} worker: {reply['error']}")
        return reply

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_worker(home: Path, model: dict[str, Any], log_file: TextIO) -> Worker:
    family, tag = str(model["name"]).split(":", 1)
    python = home / "sandboxes" / str(model["adapter"]) / "bin" / "python"
    kind = "whisper" if model["type"] == "stt" else "piper"
    return Worker(python, kind, home / "models" / family / tag, log_file)


# ----------------------------------------------------------------------------- runs


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc, 10 ms ticks); 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_used(before: dict[str, float], pids: dict[str, int]) -> dict[str, float]:
    after = cpu_snapshot(pids)
    return {f"server_{name}": after[name] - before[name] for name in pids}


@dataclass
class Samples:
    inprocess: dict[str, list[float]] = field(default_factory=dict)
    server: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, side: str, metric: str, value: Any) -> None:
        target = {"inprocess": self.inprocess, "server": self.server}.get(side, self.extra)
        target.setdefault(metric, []).append(value)


def run_transcriptions(
    client: httpx.Client,
    worker: Worker,
    pids: dict[str, int],
    clip: Path,
    runs: int,
    samples: Samples,
) -> None:
    wav = clip.read_bytes()
    for run in range(runs):
        before = cpu_snapshot(pids)
        served = server_transcription(client, wav)
        cpu = cpu_used(before, pids)
        local = worker.call(op="transcribe", path=str(clip))
        samples.add("extra", "transcription_cpu_s", {"inprocess": local["cpu_s"], **cpu})
        samples.add("server", "transcription", served["seconds"])
        samples.add("inprocess", "transcription", local["seconds"])
        samples.add("extra", "server_processing_s", served["processing_s"])
        samples.add("extra", "transcripts_match", served["text"] == local["text"])
        log(
            f"transcription {run + 1}/{runs}: server {served['seconds']:.3f} s, "
            f"in-process {local['seconds']:.3f} s"
        )


def run_syntheses(
    client: httpx.Client, worker: Worker, pids: dict[str, int], runs: int, samples: Samples
) -> None:
    for run in range(runs):
        before = cpu_snapshot(pids)
        served = server_speech(client, PARAGRAPH)
        cpu = cpu_used(before, pids)
        local = worker.call(op="synthesize", text=PARAGRAPH)
        samples.add("extra", "synthesis_cpu_s", {"inprocess": local["cpu_s"], **cpu})
        samples.add("server", "synthesis", served.seconds)
        samples.add("server", "first_audio", served.first_audio_s)
        samples.add("inprocess", "synthesis", local["seconds"])
        samples.add("inprocess", "first_audio", local["first_audio_s"])
        samples.add("extra", "server_first_byte_s", served.first_byte_s)
        samples.add("extra", "server_audio_bytes", len(served.body) - STREAM_HEADER_BYTES)
        samples.add("extra", "inprocess_audio_bytes", local["audio_bytes"])
        samples.add("extra", "inprocess_chunks", local["chunks"])
        log(
            f"synthesis {run + 1}/{runs}: server {served.seconds:.3f} s "
            f"(first audio {served.first_audio_s:.3f} s), in-process {local['seconds']:.3f} s "
            f"(first audio {local['first_audio_s']:.3f} s)"
        )


# ----------------------------------------------------------------------------- report


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def cpu_medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median CPU seconds per request: in-process, the control plane, the runner."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]} if runs else {}


def summarize(samples: Samples) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for metric, goal in GOALS.items():
        local_runs, served_runs = samples.inprocess[metric], samples.server[metric]
        local, served = spread(local_runs), spread(served_runs)
        ratio = served["median"] / local["median"]
        paired = [s / i for s, i in zip(served_runs, local_runs, strict=True)]
        summary[metric] = {
            "inprocess": local,
            "server": served,
            "ratio_of_medians": ratio,
            "ratio_of_mins": served["min"] / local["min"],
            "median_paired_ratio": statistics.median(paired),
            "overhead_ms_of_medians": (served["median"] - local["median"]) * 1000,
            "goal": goal,
            "pass": ratio <= goal,
        }
    for metric in ("transcription", "synthesis"):
        summary[metric]["cpu_s_median"] = cpu_medians(samples.extra.get(f"{metric}_cpu_s", []))
    return summary


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    def span(stats: dict[str, float]) -> str:
        return " / ".join(f"{stats[k] * 1000:.1f}" for k in ("min", "median", "max"))

    header = ("metric", "in-process ms min/med/max", "server ms min/med/max", "ratio", "goal", "")
    rows = [header]
    for metric, row in summary.items():
        rows.append(
            (
                LABELS[metric],
                span(row["inprocess"]),
                span(row["server"]),
                f"{row['ratio_of_medians']:.3f}x",
                f"<= {row['goal']:.2f}x",
                "PASS" if row["pass"] else "FAIL",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


# ----------------------------------------------------------------------------- main


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vox-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def prepare_server(client: httpx.Client, server: Server, clip: Path) -> float:
    """Health, pulls, the clip (which warms up the TTS model), and one transcription warm-up."""
    wait_healthy(client, server)
    for name in (STT_MODEL, TTS_MODEL):
        log(f"pulling {name}")
        pull(client, name)
    duration = build_clip(client, clip)
    log(f"clip: {duration:.1f} s of speech in {clip}")
    server_speech(client, PARAGRAPH)
    server_transcription(client, clip.read_bytes())
    return duration


def benchmark(
    client: httpx.Client, server: Server, home: Path, work: Path, runs: int, workers: list[Worker]
) -> dict[str, Any]:
    """Prepare the server, start the in-process workers, and time both sides, alternating."""
    clip = work / "clip.wav"
    duration = prepare_server(client, server, clip)
    models = loaded_models(client)
    server.runner_pids = {int(m["pid"]) for m in models.values()}
    with (work / "workers.log").open("w") as worker_log:
        for name in (STT_MODEL, TTS_MODEL):
            workers.append(start_worker(home, models[name], worker_log))
    stt, tts = workers
    stt.call(op="transcribe", path=str(clip))  # warm-up, not timed
    tts.call(op="synthesize", text=PARAGRAPH)
    samples = Samples()
    control = server.process.pid
    stt_pids = {"control": control, "runner": int(models[STT_MODEL]["pid"])}
    tts_pids = {"control": control, "runner": int(models[TTS_MODEL]["pid"])}
    run_transcriptions(client, stt, stt_pids, clip, runs, samples)
    run_syntheses(client, tts, tts_pids, runs, samples)
    return {
        "samples": samples,
        "clip_seconds": duration,
        "workers": {w.kind: w.ready for w in workers},
        "server_models": list(loaded_models(client).values()),
    }


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run the benchmark between a server start and a clean stop of it and of every worker."""
    home = (args.home or work / "home").resolve()
    port = args.port or free_port()
    load_before = os.getloadavg()
    server = start_server(home, port, work / "server.log")
    log(f"server pid {server.process.pid} on port {port}, home {home}")
    workers: list[Worker] = []
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            result = benchmark(client, server, home, work, args.runs, workers)
    except BaseException:
        log(f"failed; server log tail:\n{tail(server.log_path)}")
        raise
    finally:
        for worker in workers:
            worker.close()
        leftover = stop_server(server)
    result["loadavg"] = {"before": load_before, "after": os.getloadavg()}
    result["leftover_processes"] = leftover
    result["port"] = port
    if args.home:
        result["home"] = str(home)
    return result


def tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def report(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    samples: Samples = result.pop("samples")
    summary = summarize(samples)
    return {
        "benchmark": "overhead",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        "models": {"stt": STT_MODEL, "tts": TTS_MODEL},
        "settings": {
            "transcription": "faster-whisper cpu int8, beam_size=5, no VAD, no word timestamps",
            "synthesis": "piper, default voice and speed, response_format=wav (no resampling)",
            "first_audio": "server: first body byte past the 44-byte WAV header",
        },
        "clip_seconds": result["clip_seconds"],
        "clip_text_chars": len(CLIP_SCRIPT),
        "paragraph_chars": len(PARAGRAPH),
        "summary": summary,
        "samples": {"inprocess": samples.inprocess, "server": samples.server, **samples.extra},
        "machine": machine_info(),
        "git": git_info(),
        **result,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with workspace(args.keep) as work:
            result = measure(args, work)
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        log(f"error: {exc}")
        return 2
    data = report(args, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(format_table(data["summary"]))
    print(
        f"\nclip {data['clip_seconds']:.1f} s, paragraph {len(PARAGRAPH)} chars, "
        f"{args.runs} runs each; results in {args.out}"
    )
    return 0 if all(row["pass"] for row in data["summary"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

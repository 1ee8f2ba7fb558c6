"""One short check of a GPU host with no network: interpreter, memory, eviction, restart.

    uv run python bench/gpu_check.py                  # cuda when the NVIDIA driver is there
    uv run python bench/gpu_check.py --device cpu     # CI: the same steps, NVML faked by RSS

Nothing is downloaded: the adapter runs from this very Python through ``--adapter-python``
(docs/adapters.md), so no sandbox is built, and the models are made on the spot: two configs
of the example "tone" family (examples/vox-adapter-tone, numpy only), or with ``--family
parakeet`` two tiny random Parakeet models (tests/models/tiny_parakeet.py; this Python then
needs onnx-asr and onnxruntime-gpu). Steps, each a row of the table printed at the end:

1. ``vox serve --device D`` with the adapter's interpreter; both models pulled and loaded;
   no venv under ``$VOX_HOME/sandboxes``.
2. Per model: the runner's memory as NVML reports it per process (on CPU: its RSS, the
   "fake NVML") against what the scheduler records in ``/api/ps``.
3. A runner killed with SIGKILL: the model is dropped and the next request starts a new one.
4. The server restarted with a memory budget that fits one runner: loading the second model
   evicts the first.

Exit status 0 when every row passes. Bounded by ``--timeout`` (default 300 s).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from vox_control.scheduler.memory import NvmlProbe, rss_mb

REPO = Path(__file__).resolve().parents[1]
TONE = REPO / "examples" / "vox-adapter-tone"
# Two runners measured at different moments differ by allocator noise; beyond this it is a bug.
TOLERANCE = 0.25
SLACK_MB = 32.0

Row = tuple[str, bool, str]


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the check ran past its --timeout")
        return left

    def wait_for(self, what: str, ready: Callable[[], bool], limit: float = 60.0) -> None:
        end = min(time.monotonic() + limit, self.end)
        while time.monotonic() < end:
            if ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- the adapter's interpreter


def tone_interpreter(root: Path) -> Path:
    """This Python, seeing the tone package through PYTHONPATH and a dist-info that names its
    entry point: what an installed package gives, with nothing fetched or built."""
    shim = root / "site"
    info = shim / "vox_adapter_tone-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vox-adapter-tone\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text("[vox.adapters]\ntone = vox_adapter_tone:ToneAdapter\n")
    path = os.pathsep.join([str(TONE / "src"), str(shim)])
    python = root / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{path}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return python


def make_models(root: Path, family: str) -> dict[str, Path]:
    models: dict[str, Path] = {}
    for index, name in enumerate(("check:one", "check:two")):
        directory = root / "models" / name.replace(":", "-")
        if family == "tone":
            directory.mkdir(parents=True)
            config = {"sample_rate": 16000, "char_ms": 60, "voices": {"v": 110.0 * (index + 1)}}
            (directory / "tone.json").write_text(json.dumps(config))
        else:
            sys.path.insert(0, str(REPO))
            from tests.models.tiny_parakeet import build

            build(directory, seed=index)
        models[name] = directory
    return models


# ---------------------------------------------------------------- the server


@contextmanager
def server(home: Path, env: dict[str, str], deadline: Deadline) -> Iterator[httpx.Client]:
    with tempfile.TemporaryFile() as log:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "vox_cli.main", "serve", "--port", str(port)],
            env={**os.environ, "VOX_HOME": str(home), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

        def healthy() -> bool:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"vox serve exited:\n{log.read().decode(errors='replace')}")
            try:
                return client.get("/api/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            deadline.wait_for("the server", healthy)
            yield client
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            client.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def request(client: httpx.Client, name: str, family: str) -> None:
    if family == "tone":
        r = client.post("/v1/audio/speech", json={"model": name, "input": "Check one two."})
    else:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            noise = np.random.default_rng(0).normal(0, 3000, 16000).astype("<i2")
            w.writeframes(noise.tobytes())
        files = {"file": ("noise.wav", buf.getvalue())}
        r = client.post("/v1/audio/transcriptions", files=files, data={"model": name})
    if r.status_code != 200:
        raise RuntimeError(f"{name}: HTTP {r.status_code}: {r.text}")


def loaded(client: httpx.Client) -> dict[str, dict[str, Any]]:
    models: list[dict[str, Any]] = client.get("/api/ps").json()["models"]
    return {m["name"]: m for m in models}


# ---------------------------------------------------------------- the check


class Check:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.device, self.family = args.device, args.family
        self.deadline = Deadline(args.timeout)
        self.root = root
        self.rows: list[Row] = []
        adapter = "tone" if self.family == "tone" else "parakeet"
        python = tone_interpreter(root) if self.family == "tone" else Path(sys.executable)
        self.adapter = adapter
        self.env = {
            "VOX_DEVICE": self.device,
            "VOX_ADAPTER_PYTHON": f"{adapter}={python}",
            "VOX_ALLOW_LOCAL_DIR": str(root),
            "VOX_PULL_DEFAULTS": "false",
            "VOX_OFFLINE": "true",
            "VOX_KEEP_ALIVE": "-1",
        }
        self.models = make_models(root, self.family)
        if self.device.startswith("cuda"):
            nvml = NvmlProbe.create()
            if nvml is None:
                raise SystemExit("--device cuda needs NVML (nvidia-ml-py and a driver)")
            self.gpu_mb: Callable[[int], float | None] = lambda pid: nvml.process_mb(0, pid)
            self.probe_name = "NVML"
        else:
            self.gpu_mb = rss_mb  # the fake NVML: the same per-process figure the CPU pool uses
            self.probe_name = "RSS (fake NVML)"

    def row(self, step: str, ok: bool, detail: str) -> None:
        self.rows.append((step, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {step}: {detail}", flush=True)

    def run(self) -> list[Row]:
        home = self.root / "home"
        with server(home, self.env, self.deadline) as client:
            self.install_and_load(client, home)
            sizes = self.compare_memory(client)
            self.kill_and_restart(client)
        budget = max(sizes) * 1.5
        with server(home, {**self.env, "VOX_MEMORY_BUDGET": f"{budget:.0f}MB"}, self.deadline) as c:
            self.evict(c, budget)
        return self.rows

    def install_and_load(self, client: httpx.Client, home: Path) -> None:
        started = time.monotonic()
        kind = "tts" if self.family == "tone" else "stt"
        for name, directory in self.models.items():
            body = {"name": name, "type": kind, "adapter": self.adapter, "source": str(directory)}
            r = client.post("/api/register", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"register {name}: {r.text}")
            pulled = client.post("/api/pull", json={"model": name, "stream": False})
            if pulled.status_code != 200:
                raise RuntimeError(f"pull {name}: {pulled.text}")
            request(client, name, self.family)
        built = sorted(p.name for p in (home / "sandboxes").glob("*") if p.is_dir())
        names = sorted(loaded(client))
        ok = names == sorted(self.models) and not any(self.adapter in b for b in built)
        took = time.monotonic() - started
        self.row("load two", ok, f"loaded {names} in {took:.1f} s; sandboxes built: {built}")

    def compare_memory(self, client: httpx.Client) -> list[float]:
        sizes: list[float] = []
        for name, model in sorted(loaded(client).items()):
            seen = self.gpu_mb(int(model["pid"]))
            recorded = float(model["memory_mb"])
            sizes.append(recorded)
            ok = seen is not None and abs(seen - recorded) <= max(SLACK_MB, TOLERANCE * seen)
            self.row(
                f"memory {name}",
                ok,
                f"{self.probe_name} {seen or 0:.0f} MB, /api/ps {recorded:.0f} MB "
                f"(measured: {model['memory_measured']}, device {model['device']})",
            )
        return sizes

    def kill_and_restart(self, client: httpx.Client) -> None:
        name = sorted(self.models)[0]
        old = int(loaded(client)[name]["pid"])
        os.kill(old, signal.SIGKILL)
        self.deadline.wait_for(
            "the scheduler to drop the dead runner", lambda: name not in loaded(client)
        )
        request(client, name, self.family)
        new = int(loaded(client)[name]["pid"])
        self.row("runner killed", new != old, f"{name}: pid {old} killed, request served by {new}")

    def evict(self, client: httpx.Client, budget: float) -> None:
        first, second = sorted(self.models)
        request(client, first, self.family)
        request(client, second, self.family)
        names = sorted(loaded(client))
        self.row("eviction", names == [second], f"budget {budget:.0f} MB: loaded {names}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    nvidia = Path("/proc/driver/nvidia/version").exists()
    parser.add_argument("--device", default="cuda" if nvidia else "cpu")
    parser.add_argument("--family", choices=("tone", "parakeet"), default=None)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.family is None:
        args.family = "parakeet" if args.device.startswith("cuda") else "tone"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vox-gpu-check-") as tmp:
        rows = Check(args, Path(tmp)).run()
    width = max(len(step) for step, _, _ in rows)
    print(f"\nvox gpu check: device {args.device}, family {args.family}")
    for step, ok, detail in rows:
        print(f"{step:<{width}}  {'PASS' if ok else 'FAIL'}  {detail}")
    print(f"{len(rows)} checks in {time.monotonic() - started:.1f} s")
    return 0 if all(ok for _, ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

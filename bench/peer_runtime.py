"""vox-runtime 0.2.93 from PyPI, serving the joe voice files Vox installed (for bench/ scripts).

vox-runtime pulls from the Hugging Face hub, which this machine cannot reach; so its venv
also gets vox-piper 0.2.5 (its piper adapter) and piper-tts from PyPI, and its home gets the
same .onnx and .onnx.json as blobs with a manifest for ``piper-tts:en-us-joe-medium`` (its
name for ``piper:``), the layout of its BlobStore (vox/core/store.py). It serves on its own
port with ``vox serve``, whose ``POST /v1/audio/speech`` answers the same body as Vox's.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

PEER = ["vox-runtime==0.2.93", "vox-piper==0.2.5", "piper-tts>=1.2.0,<2.0.0", "pathvalidate"]
VOICE = "piper/en-us-joe-medium"
TAG = "en-us-joe-medium"


def install(venvs: Path) -> Path:
    """The peer's venv (made once): its ``vox`` script."""
    where = venvs / "vox-runtime"
    script = where / "bin" / "vox"
    if not script.exists():
        subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(where)], check=True)
        python = str(where / "bin" / "python")
        subprocess.run(["uv", "pip", "install", "-q", "--python", python, *PEER], check=True)
    return script


def plant(home: Path, store: Path) -> None:
    """The joe voice as vox-runtime's blobs and manifest (under both its names)."""
    layers = []
    for path in sorted((store / VOICE).glob("*.onnx*")):
        data = path.read_bytes()
        digest = "sha256-" + hashlib.sha256(data).hexdigest()
        blob = home / "models" / "blobs" / digest
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
        kind = "application/json" if path.suffix == ".json" else "application/octet-stream"
        layers.append(
            {"media_type": kind, "digest": digest, "size": len(data), "filename": path.name}
        )
    config = {"type": "tts", "format": "onnx", "adapter": "piper-tts-onnx"}
    manifest = {"schema_version": 1, "layers": layers, "config": config}
    for name in ("piper-tts", "piper"):
        path = home / "models" / "manifests" / "library" / name / TAG
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))


def start(venvs: Path, home: Path, store: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """``vox serve`` of vox-runtime on ``port``, healthy; its URL."""
    script = install(venvs)
    peer_home = home / "vox-runtime-home"
    plant(peer_home, store)
    env = {"VOX_HOME": str(peer_home), "PATH": f"{script.parent}:/usr/bin:/bin"}
    log = (home / "vox-runtime.log").open("ab")
    cmd = [str(script), "serve", "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vox-runtime exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"vox-runtime did not become healthy; see {log.name}")

"""Vox installed from its wheels as the README says (`uv tool install`), outside the checkout,
serves a real model: the sandbox gets vox-protocol and vox-runner from the installed
distribution, never a registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import wave
from io import BytesIO
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.deploy.conftest import missing

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        missing("uv is not on PATH")
    return uv


def test_installed_wheels_pull_and_speak(tmp_path: Path) -> None:
    uv = _uv()
    dist = tmp_path / "dist"
    subprocess.run(
        [uv, "build", "--all-packages", "--wheel", "--out-dir", str(dist), "--quiet"],
        cwd=REPO,
        check=True,
        timeout=600,
    )
    # vox-cluster (Ray Serve, 385 MB) is not part of a single-host install.
    wheels = sorted(str(p) for p in dist.glob("*.whl") if not p.name.startswith("vox_cluster"))
    assert {Path(w).name.split("-")[0] for w in wheels} >= {
        "vox_cli", "vox_control", "vox_protocol", "vox_runner", "vox_sandboxes",
    }  # fmt: skip
    # The README's command: the CLI wheel as the tool, every other wheel `--with` it.
    cli = next(w for w in wheels if Path(w).name.startswith("vox_cli-"))
    extras = [arg for w in wheels if w != cli for arg in ("--with", w)]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= {"UV_TOOL_DIR": str(tmp_path / "tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "bin")}
    subprocess.run(
        [uv, "tool", "install", "--quiet", "--python", sys.executable, cli, *extras],
        check=True,
        env=env,
        timeout=600,
    )
    vox = tmp_path / "bin" / "vox"
    port = free_port()
    home = tmp_path / "home"
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(vox), "serve", "--port", str(port)],
        cwd=tmp_path,  # nowhere near the source tree
        env={**env, "VOX_HOME": str(home), "VOX_PULL_DEFAULTS": "false"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/api/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=600) as client:
            pulled = client.post(
                "/api/pull", json={"model": "piper:en-us-joe-medium", "stream": False}
            )
            assert pulled.status_code == 200, pulled.text
            speech = client.post(
                "/api/synthesize",
                json={"model": "piper:en-us-joe-medium", "input": "Installed from wheels."},
            )
            assert speech.status_code == 200, speech.text
        with wave.open(BytesIO(speech.content)) as w:
            assert len(speech.content) > 44 + w.getframerate() // 2  # over half a second
        sandbox_python = home / "sandboxes" / "piper" / "bin" / "python"
        shown = subprocess.run(
            [str(sandbox_python), "-c", "import vox_runner; print(vox_runner.__file__)"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert str(REPO) not in shown.stdout  # a copy in the sandbox, not the source tree
    finally:
        server.terminate()
        server.wait(30)
        log.close()

"""`vox serve --adapter-python`: an interpreter made beforehand, outside Vox, runs an adapter
with no venv built for it; one that cannot run it is refused with what it lacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.adapters.tone import REPO, copy_example, pull, tone_server

pytestmark = pytest.mark.e2e


def _venv(path: Path, *requirements: str) -> Path:
    """A venv made the way an operator would, with ``requirements`` from the repo's dirs."""
    uv = str(find_uv_bin())
    python = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([uv, "venv", "--quiet", "--python", python, str(path)], check=True)
    if requirements:
        cmd = [uv, "pip", "install", "--quiet", "--python", str(path / "bin" / "python")]
        subprocess.run([*cmd, "--no-sources", *requirements], check=True, timeout=600)
    return path / "bin" / "python"


def test_adapter_python_serves_without_a_sandbox(tmp_path: Path) -> None:
    good = _venv(tmp_path / "piper-env", str(REPO / "protocol"), f"{REPO / 'runners'}[piper]")
    broken = _venv(tmp_path / "bare-env", str(REPO / "protocol"))  # no vox_runner in it
    _project, model_dir = copy_example(tmp_path)
    env = {"VOX_ADAPTER_PYTHON": f"piper={good},tone={broken}"}
    with tone_server(tmp_path, **env) as server:
        events = pull(server, "piper:en-us-joe-medium")
        assert events[-1]["status"] == "success", events[-5:]
        with server.client() as client:
            speech = client.post(
                "/v1/audio/speech",
                json={"model": "piper:en-us-joe-medium", "input": "The quick brown fox."},
            )
            assert speech.status_code == 200, speech.text
            assert len(speech.content) > 10_000
            shown = client.post("/api/show", json={"model": "piper:en-us-joe-medium"}).json()
            assert shown["sandbox"] == str(good.parent.parent)
        sandboxes = server.home / "sandboxes"
        built = [p.name for p in sandboxes.iterdir()] if sandboxes.is_dir() else []
        assert not [n for n in built if "piper" in n], built

        with server.client() as client:
            body = {
                "name": "tone:demo",
                "type": "tts",
                "adapter": "tone",
                "source": str(model_dir),
            }
            assert client.post("/api/register", json=body).status_code == 200
        events = pull(server, "tone:demo")
        assert events[-1]["status"] == "error", events[-3:]
        message = events[-1]["error"]["message"]
        assert str(broken) in message, message
        assert "module vox_runner" in message, message
        with server.client() as client:
            speech = client.post("/v1/audio/speech", json={"model": "tone:demo", "input": "hi"})
            assert speech.status_code == 404, speech.text  # the failed pull installed nothing

"""The published pipecat clients in a cached Python 3.12 venv, driven through peer_driver.py."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PEERS = ("pipecat-local-tts-server==0.7.0", "pipecat-local-stt-server==0.4.0")
DRIVER = Path(__file__).with_name("peer_driver.py")
CACHE = Path(os.environ.get("VOX_TESTS_CACHE", "~/.cache/vox-tests")).expanduser()


def find_python312() -> str | None:
    """An explicit 3.12 interpreter path (uv's `--python 3.12` is confused by pyenv shims)."""
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.12*/bin/python3.12"))
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    candidates += ["/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def peer_python() -> str:
    """The venv's interpreter, created once and cached; skips (fails in CI) without 3.12."""
    base = find_python312()
    if base is None:
        reason = "the published pipecat clients need Python >= 3.12 and none is installed"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    venv = CACHE / "pipecat-py312"
    python = venv / "bin" / "python"
    stamp = venv / "peers.txt"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "pipecat-py312.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test sessions may build it at once
        if not (python.exists() and stamp.exists() and stamp.read_text() == "\n".join(PEERS)):
            uv = [sys.executable, "-m", "uv"] if _has_uv_module() else ["uv"]
            venv_cmd = [*uv, "venv", "--clear", "--python", base, str(venv), "-q"]
            subprocess.run(venv_cmd, check=True)
            install = [*uv, "pip", "install", "--python", str(python), *PEERS, "-q"]
            subprocess.run(install, check=True)
            stamp.write_text("\n".join(PEERS))
    return str(python)


def _has_uv_module() -> bool:
    try:
        import uv  # noqa: F401
    except ImportError:
        return False
    return True


def drive(mode: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run the driver with the peer interpreter; its JSON result."""
    done = subprocess.run(
        [peer_python(), str(DRIVER), mode, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result

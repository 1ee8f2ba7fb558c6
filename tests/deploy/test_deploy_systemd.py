"""The systemd unit: `systemd-analyze verify` clean, exposure score, hardening, env file."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from vox_control.settings import Settings

from tests.deploy.conftest import ENV_FILE, UNIT, require_tool

MAX_EXPOSURE = 3.0
INSTALLED_VOX = "/opt/vox/venv/bin/vox"


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this checkout's vox: verify insists the binary exists."""
    local_vox = Path(sys.executable).parent / "vox"
    assert local_vox.is_file(), f"{local_vox} missing: run `uv sync`"
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_VOX} " in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(f"ExecStart={INSTALLED_VOX} ", f"ExecStart={local_vox} "))
    return unit


def test_verify_has_no_warnings(local_unit: Path) -> None:
    tool = require_tool("systemd-analyze", "apt-get install systemd")
    out = subprocess.run(
        [tool, "verify", str(local_unit)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert not out.stderr.strip(), out.stderr
    assert not out.stdout.strip(), out.stdout


def test_exposure_is_at_most_3(local_unit: Path) -> None:
    tool = require_tool("systemd-analyze", "apt-get install systemd")
    out = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", str(local_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, out.stdout


def test_unit_hardening_and_gpu_access() -> None:
    d = directives(UNIT.read_text())
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "vox",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "DevicePolicy": "closed",
        "KillMode": "mixed",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], f"{key}={d.get(key)}"
    allowed = " ".join(d.get("DeviceAllow", []))
    for device in ("char-nvidia-frontend", "char-nvidia-uvm", "/dev/nvidiactl"):
        assert device in allowed
    # Long enough for the server's 10 s graceful shutdown and its runners' exit, then a kill.
    assert 15 <= int(d["TimeoutStopSec"][0]) <= 120
    env = " ".join(d["Environment"])
    assert "VOX_HOME=/var/lib/vox" in env
    # PrivateDevices would hide the NVIDIA nodes, ProcSubset=pid /proc/driver/nvidia.
    assert "PrivateDevices" not in d
    assert "ProcSubset" not in d


def test_env_file_names_only_real_settings() -> None:
    """Every VOX_* the env file sets or shows commented out is one Settings reads."""
    fields = {f"VOX_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    names = re.findall(r"^#?(VOX_[A-Z0-9_]+)=", ENV_FILE.read_text(), flags=re.MULTILINE)
    assert names, "no VOX_* setting in the env file"
    assert not set(names) - fields, f"not settings: {sorted(set(names) - fields)}"
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", line), line
    # The env file must not re-point VOX_HOME away from the unit's state directory.
    assert not re.search(r"^VOX_HOME=", ENV_FILE.read_text(), flags=re.MULTILINE)

"""The images' entrypoints, the unit's ExecStart and the nix app name commands the package has."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
import shlex
import tomllib

import pytest
from vox_cli.main import app
from vox_control.settings import Settings

from tests.deploy.conftest import COMPOSE, CONTAINERFILE, ROOT, UNIT

VENV_BIN = "/opt/vox/venv/bin/"


def console_scripts() -> set[str]:
    scripts: set[str] = set()
    for member in ("cli", "runners"):
        data = tomllib.loads((ROOT / member / "pyproject.toml").read_text())
        scripts |= set(data["project"].get("scripts", {}))
    return scripts


def assert_vox_command(argv: list[str]) -> None:
    """argv[0] is the installed `vox` script and argv[1] one of its commands."""
    assert argv[0] == f"{VENV_BIN}vox", argv
    assert "vox" in console_scripts()
    entry = importlib.metadata.entry_points(group="console_scripts", name="vox")
    assert callable(next(iter(entry)).load())
    try:
        app[argv[1]]
    except KeyError:
        pytest.fail(f"`vox {argv[1]}` is not a command")


def instruction(name: str) -> list[str]:
    lines = CONTAINERFILE.read_text().replace("\\\n", " ").splitlines()
    found = [line.split(None, 1)[1] for line in lines if line.startswith(f"{name} ")]
    assert found, f"no {name} in the Containerfile"
    return list(json.loads(found[-1]))  # exec form only: a shell form would not get SIGTERM


def test_container_entrypoint_runs_vox_serve_under_tini() -> None:
    entrypoint, cmd = instruction("ENTRYPOINT"), instruction("CMD")
    assert entrypoint[:2] == ["/usr/bin/tini", "--"]
    assert_vox_command([*entrypoint[2:], *cmd])


def test_container_healthcheck_script_is_copied() -> None:
    text = CONTAINERFILE.read_text()
    assert "COPY containers/healthcheck.py /opt/vox/healthcheck.py" in text
    assert (ROOT / "containers" / "healthcheck.py").is_file()
    assert '"/opt/vox/venv/bin/python", "/opt/vox/healthcheck.py"' in text
    assert '"/opt/vox/venv/bin/python", "/opt/vox/healthcheck.py"' in COMPOSE.read_text()


def test_unit_execstart_runs_vox_serve() -> None:
    lines = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1
    assert_vox_command(shlex.split(lines[0].removeprefix("ExecStart=")))


def test_nix_app_runs_vox_serve() -> None:
    text = (ROOT / "flake.nix").read_text()
    assert re.search(r'exec \$\{vox\}/bin/vox serve "\$@"', text)
    assert 'mainProgram = "vox"' in (ROOT / "nix" / "package.nix").read_text()
    assert "serve" in app


def test_vox_variables_are_settings() -> None:
    """Every VOX_* the Containerfile and compose.yaml set is a setting Settings reads."""
    fields = {f"VOX_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    for path in (CONTAINERFILE, CONTAINERFILE.with_name("Containerfile.spark"), COMPOSE):
        names = set(re.findall(r"\b(VOX_[A-Z0-9_]+)\s*[=:]", path.read_text()))
        assert names, path
        assert not names - fields, f"{path.name}: {sorted(names - fields)}"

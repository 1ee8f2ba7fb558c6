"""flake.nix: parses, and `nix flake check --no-build` passes against the offline stub nixpkgs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, require_tool

NIX_FILES = ["flake.nix", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "nix").rglob("*.nix"))]
# What the flake reads: itself, nix/, and the workspace members' pyprojects and sources.
FLAKE_TREE = [
    "flake.nix",
    "nix",
    "pyproject.toml",
    "protocol",
    "runners",
    "sandboxes",
    "control",
    "cli",
]


def nix_env(tmp_path: Path) -> dict[str, str]:
    # No daemon, no substituters (offline), no build users (CI runs as root without nixbld).
    config = "experimental-features = nix-command flakes\nsubstituters =\nbuild-users-group =\n"
    return {**os.environ, "NIX_CONFIG": config, "HOME": str(tmp_path / "home")}


@pytest.fixture
def flake(tmp_path: Path) -> Path:
    """The flake's inputs copied out, so that it is evaluated without git and without .venv."""
    dest = tmp_path / "flake"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
    for name in FLAKE_TREE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def nix_cmd(flake: Path, *args: str) -> list[str]:
    return [
        "nix",
        *args,
        "--no-write-lock-file",
        "--override-input",
        "nixpkgs",
        f"path:{flake / 'nix' / 'stub-nixpkgs'}",
    ]


@pytest.mark.parametrize("name", NIX_FILES)
def test_nix_file_parses(name: str, tmp_path: Path) -> None:
    tool = require_tool("nix-instantiate", "apt-get install nix-bin")
    out = subprocess.run(
        [tool, "--parse", str(ROOT / name)],
        capture_output=True,
        text=True,
        timeout=60,
        env=nix_env(tmp_path),
    )
    assert out.returncode == 0, out.stderr


def test_flake_check_no_build(flake: Path, tmp_path: Path) -> None:
    require_tool("nix", "apt-get install nix-bin")
    out = subprocess.run(
        [*nix_cmd(flake, "flake", "check", "--no-build"), f"path:{flake}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=nix_env(tmp_path),
    )
    assert out.returncode == 0, out.stderr


def test_flake_outputs(flake: Path, tmp_path: Path) -> None:
    """nix run starts `vox serve`; the runner source holds protocol/ and runners/ and no more."""
    require_tool("nix", "apt-get install nix-bin")

    def nix_eval(attr: str, apply: str) -> object:
        out = subprocess.run(
            [*nix_cmd(flake, "eval", "--json"), f"path:{flake}#{attr}", "--apply", apply],
            capture_output=True,
            text=True,
            timeout=300,
            env=nix_env(tmp_path),
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    system = "x86_64-linux"
    info = {
        "appType": nix_eval(f"apps.{system}.default", "a: a.type"),
        "roots": nix_eval(
            f"packages.{system}.default",
            "v: map (d: d.root) (builtins.filter (d: d ? root) v.deps)",
        ),
        "wrapper": nix_eval(f"packages.{system}.default", "v: v.makeWrapperArgs"),
        "shell": nix_eval(
            f"devShells.{system}.default",
            "s: builtins.fromJSON (builtins.unsafeDiscardStringContext s.env)",
        ),
    }
    assert isinstance(info["roots"], list)
    assert isinstance(info["shell"], dict)
    assert info["appType"] == "app"
    roots = [Path(r) for r in info["roots"]]
    assert {r.parent.name for r in roots} == {"runners"}, roots
    source = roots[0].parents[1]
    files = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    assert "protocol/pyproject.toml" in files
    assert "runners/pyproject.toml" in files
    assert "runners/src/vox_runner/__main__.py" in files
    assert all(f.startswith(("protocol/", "runners/")) for f in files), files
    assert not any("__pycache__" in f or f.endswith("README.md") for f in files), files
    assert "UV_PYTHON_DOWNLOADS" in info["wrapper"]
    assert info["shell"]["UV_PYTHON_DOWNLOADS"] == "never"

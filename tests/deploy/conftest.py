"""Deployment checks: paths of the files under test and tools that skip locally but fail in CI."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "containers" / "Containerfile"
COMPOSE = ROOT / "containers" / "compose.yaml"
UNIT = ROOT / "deploy" / "systemd" / "vox.service"
ENV_FILE = ROOT / "deploy" / "systemd" / "vox.env"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> None:
    """Skip with the reason locally; in CI (CI=true) a missing prerequisite is a failure."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def require_tool(name: str, hint: str) -> str:
    """The path of a tool on PATH or next to this Python (the venv's bin), else skip or fail."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        missing(f"{name} is not installed ({hint})")
        raise AssertionError("unreachable")
    return found

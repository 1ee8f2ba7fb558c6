"""Interpreters the operator provides: the setting, and the check that says what is missing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from vox_control.settings import Settings
from vox_sandboxes import RunnerSource, SandboxError, SandboxManager

SOURCE = RunnerSource.from_requirements("vox-protocol==0.1.0", "vox-runner==0.1.0")


def test_setting_parses_adapter_equals_path() -> None:
    settings = Settings.from_env({"VOX_ADAPTER_PYTHON": "piper=/a/python, tone=~/b/python"})
    assert settings.adapter_interpreters == {
        "piper": Path("/a/python"),
        "tone": Path("~/b/python").expanduser(),
    }
    with pytest.raises(ValueError, match="ADAPTER=/path/to/python"):
        _ = Settings(adapter_python=("/no/adapter",)).adapter_interpreters


def _manager(tmp_path: Path, python: Path, protocol: int | None = None) -> SandboxManager:
    return SandboxManager(
        tmp_path / "sandboxes",
        SOURCE,
        uv="uv",
        interpreters={"piper": python},
        protocol_version=protocol,
    )


def test_this_interpreter_runs_piper_and_nothing_is_built(tmp_path: Path) -> None:
    # The test environment has vox_runner and its piper entry point installed.
    manager = _manager(tmp_path, Path(sys.executable))
    assert manager.get("piper") is None  # not yet checked: get() never blocks on a check
    sandbox = manager.ensure("piper")
    assert sandbox.external
    assert sandbox.python == Path(sys.executable)
    assert manager.get("piper") == sandbox
    assert not (tmp_path / "sandboxes").exists()


def test_missing_interpreter_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "python"
    expected = re.escape(f"{missing} for adapter piper does not exist")
    with pytest.raises(SandboxError, match=expected):
        _manager(tmp_path, missing).ensure("piper")


def test_protocol_mismatch_is_named(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="lacks: protocol version 99"):
        _manager(tmp_path, Path(sys.executable), protocol=99).ensure("piper")


def test_missing_entry_point_is_named(tmp_path: Path) -> None:
    manager = SandboxManager(
        tmp_path / "sandboxes", SOURCE, uv="uv", interpreters={"nosuch": Path(sys.executable)}
    )
    with pytest.raises(SandboxError, match=r"vox\.adapters entry point 'nosuch'"):
        manager.ensure("nosuch")

"""A sandbox probed once is trusted on a stat by later processes, until it changes or fails.

A server start used to run two interpreters per start before its first runner (the base
Python's version, then a probe of the sandbox), ~0.2 s on the way to the first answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import vox_sandboxes.manager as manager_module
from vox_sandboxes import MANIFEST_NAME, RunnerSource, SandboxManager
from vox_sandboxes.probe import PROBED_NAME

MakeManager = Callable[[RunnerSource], SandboxManager]


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every probe() the manager runs from now on (they still run)."""
    seen: list[Path] = []
    real = manager_module.probe

    def counted(python: Path) -> dict[str, str | None] | None:
        seen.append(python)
        return real(python)

    monkeypatch.setattr(manager_module, "probe", counted)
    return seen


def test_a_later_process_trusts_the_probe_on_record(
    make_manager: MakeManager, source: RunnerSource, probes: list[Path]
) -> None:
    built = make_manager(source).ensure("fake")
    probes.clear()  # the build probes in staging

    assert make_manager(source).get("fake") == built  # a new manager: as a restarted server
    assert probes == []


def test_a_sandbox_that_changed_is_probed_again(
    make_manager: MakeManager, source: RunnerSource, probes: list[Path]
) -> None:
    built = make_manager(source).ensure("fake")
    manifest = built.path / MANIFEST_NAME
    copy = manifest.with_name("copy.json")
    copy.write_bytes(manifest.read_bytes())
    os.replace(copy, manifest)  # the same words in a new file: as a sandbox written anew
    probes.clear()

    assert make_manager(source).get("fake") == built
    assert probes == [built.python]


def test_a_runner_that_did_not_start_drops_the_record(
    make_manager: MakeManager, source: RunnerSource, probes: list[Path]
) -> None:
    built = make_manager(source).ensure("fake")
    manager = make_manager(source)
    assert manager.get("fake") == built
    probes.clear()

    manager.distrust(built.python)

    assert not (built.path / PROBED_NAME).exists()
    assert manager.get("fake") == built
    assert probes == [built.python]  # probed afresh (and, passing, recorded again)
    assert (built.path / PROBED_NAME).exists()


def test_distrust_leaves_interpreters_outside_the_root_alone(
    make_manager: MakeManager, source: RunnerSource, tmp_path: Path
) -> None:
    outside = tmp_path / "venv"
    (outside / "bin").mkdir(parents=True)
    (outside / PROBED_NAME).write_text("[1]")
    make_manager(source).distrust(outside / "bin" / "python")
    assert (outside / PROBED_NAME).exists()


def test_the_base_pythons_version_is_asked_once_per_binary(
    make_manager: MakeManager,
    source: RunnerSource,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = make_manager(source).fingerprint("fake")  # no root yet: nothing recorded
    root.mkdir(parents=True)
    assert make_manager(source).fingerprint("fake") == first
    runs: list[object] = []
    real_run = manager_module.subprocess.run

    def counted(*args: object, **kwargs: object) -> object:
        runs.append(args)
        return real_run(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(manager_module.subprocess, "run", counted)
    assert make_manager(source).fingerprint("fake") == first
    assert runs == []

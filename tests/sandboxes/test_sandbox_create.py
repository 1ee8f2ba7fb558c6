"""Creating, reusing, re-creating and removing sandboxes for a throwaway runner project."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from vox_sandboxes import MANIFEST_NAME, RunnerSource, Sandbox, SandboxError, SandboxManager

MakeManager = Callable[[RunnerSource], SandboxManager]


def run_in(sandbox: Sandbox, code: str) -> str:
    out = subprocess.run(
        [str(sandbox.python), "-I", "-c", code], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_creates_a_working_isolated_sandbox(
    make_manager: MakeManager, source: RunnerSource, root: Path
) -> None:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    # Only vox entries: other packages may legitimately come and go with a concurrent `uv sync`.
    control_env_before = sorted(p.name for p in site_packages.glob("*vox*"))
    log: list[str] = []
    manager = make_manager(source)
    assert manager.get("fake") is None

    sandbox = manager.ensure("fake", log=log.append)

    assert sandbox.path == root / "fake"
    assert sandbox.python == root / "fake" / "bin" / "python"
    assert sandbox.fingerprint == manager.fingerprint("fake")
    assert log[0] == "creating sandbox for fake"
    assert any("vox-protocol" in line for line in log)  # uv's own output reaches the log
    # A copy, not an editable install pointing back into the source tree.
    where = run_in(sandbox, "import vox_protocol, vox_runner; print(vox_protocol.__file__)")
    assert Path(where).is_relative_to(sandbox.path)
    assert run_in(sandbox, "import vox_runner; print(vox_runner.MARK)") == "v1"
    # Entry-point scripts still work after the staging dir was renamed into place.
    script = subprocess.run([str(sandbox.path / "bin" / "vox-runner")], capture_output=True)
    assert script.stdout.decode().strip() == "fake runner v1"

    manifest = json.loads((sandbox.path / MANIFEST_NAME).read_text())
    assert manifest["adapter"] == "fake"
    assert manifest["fingerprint"] == sandbox.fingerprint
    assert manifest["versions"] == {"vox-protocol": "0.1.0", "vox-runner": "0.1.0"}
    assert any(p.startswith("msgspec==") for p in manifest["packages"])
    assert manifest["python"]["version"].startswith(sys.version.split()[0])
    assert manifest["uv_version"].startswith("uv ")

    assert manager.get("fake") == sandbox
    assert manager.list() == [sandbox]
    assert leftovers(root) == []
    assert sorted(p.name for p in site_packages.glob("*vox*")) == control_env_before


def test_second_ensure_is_a_fast_no_op(make_manager: MakeManager, source: RunnerSource) -> None:
    manager = make_manager(source)
    first = manager.ensure("fake")
    created_at = manager.manifest("fake")
    inode = first.path.stat().st_ino
    log: list[str] = []

    started = time.monotonic()
    again = make_manager(source).ensure("fake", log=log.append)

    assert time.monotonic() - started < 2.0
    assert again == first
    assert log == []
    assert again.path.stat().st_ino == inode
    assert manager.manifest("fake") == created_at


def test_source_change_recreates_with_the_new_code(
    make_manager: MakeManager,
    source: RunnerSource,
    projects: tuple[Path, Path],
    root: Path,
    rewrite_runner: Callable[..., None],
) -> None:
    old = make_manager(source).ensure("fake")
    rewrite_runner(projects[1], mark="v2")
    changed = RunnerSource.from_projects(*projects)
    assert changed.fingerprint != source.fingerprint
    manager = make_manager(changed)
    assert manager.get("fake") is None  # stale: built from other source

    log: list[str] = []
    new = manager.ensure("fake", log=log.append)

    assert log[0] == "re-creating sandbox for fake"
    assert new.fingerprint != old.fingerprint
    assert run_in(new, "import vox_runner; print(vox_runner.MARK)") == "v2"
    assert leftovers(root) == []


def test_bytecode_in_the_source_tree_changes_nothing(
    source: RunnerSource, projects: tuple[Path, Path]
) -> None:
    cache = projects[1] / "src" / "vox_runner" / "__pycache__"
    cache.mkdir()
    (cache / "__init__.cpython-311.pyc").write_bytes(b"junk")
    assert RunnerSource.from_projects(*projects).fingerprint == source.fingerprint


def test_unknown_adapter_is_a_clear_error(make_manager: MakeManager, source: RunnerSource) -> None:
    with pytest.raises(SandboxError, match=r"unknown adapter 'nope'.*known: fake, other"):
        make_manager(source).ensure("nope")


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "-x"])
def test_invalid_adapter_names_are_rejected(
    make_manager: MakeManager, source: RunnerSource, name: str
) -> None:
    with pytest.raises(SandboxError, match="invalid adapter name"):
        make_manager(source).ensure(name)


def test_failing_uv_keeps_the_previous_sandbox(
    make_manager: MakeManager,
    source: RunnerSource,
    projects: tuple[Path, Path],
    root: Path,
    rewrite_runner: Callable[..., None],
) -> None:
    good = make_manager(source).ensure("fake")
    manifest_before = (good.path / MANIFEST_NAME).read_text()
    # Unresolvable without touching the network: the protocol on offer is 0.1.0.
    rewrite_runner(projects[1], fake_extra='["vox-protocol>=99"]')
    broken = make_manager(RunnerSource.from_projects(*projects))

    with pytest.raises(SandboxError) as caught:
        broken.ensure("fake")

    message = str(caught.value)
    assert message.startswith("could not create the sandbox for fake: uv exited 1:")
    assert "vox-protocol>=99" in message  # uv's own explanation
    assert (good.path / MANIFEST_NAME).read_text() == manifest_before
    assert run_in(good, "import vox_runner; print(vox_runner.MARK)") == "v1"
    assert make_manager(source).get("fake") == good
    assert leftovers(root) == []


def test_stale_staging_and_old_dirs_are_cleaned(
    make_manager: MakeManager, source: RunnerSource, root: Path
) -> None:
    for name in (".fake.staging", ".fake.old"):
        (root / name / "bin").mkdir(parents=True)
        (root / name / "junk").write_text("from a killed process")
    log: list[str] = []

    make_manager(source).ensure("fake", log=log.append)

    assert leftovers(root) == []
    assert sum("leftover" in line for line in log) == 2


def test_half_built_sandbox_is_never_returned(
    make_manager: MakeManager, source: RunnerSource, root: Path
) -> None:
    # What a builder that died between venv creation and the manifest would leave if it had
    # built in place: a venv without vox-sandbox.json.
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(root / "fake")], check=True)
    manager = make_manager(source)
    assert manager.get("fake") is None
    assert manager.list() == []
    sandbox = manager.ensure("fake")
    assert run_in(sandbox, "import vox_runner; print(vox_runner.MARK)") == "v1"


@pytest.mark.parametrize("breakage", ["uninstalled", "crashes"])
def test_sandbox_whose_python_no_longer_runs_is_stale(
    make_manager: MakeManager, source: RunnerSource, breakage: str
) -> None:
    manager = make_manager(source)
    sandbox = manager.ensure("fake")
    assert manager.get("fake") == sandbox  # verified once, then cached by the manager
    sandbox.python.unlink()
    if breakage == "uninstalled":  # the base interpreter it was made from is gone
        sandbox.python.symlink_to("/nonexistent/python3.11")
    else:  # there, but cannot run
        sandbox.python.write_text("#!/bin/sh\nexit 1\n")
        sandbox.python.chmod(0o755)
    assert manager.get("fake") is None

    log: list[str] = []
    again = manager.ensure("fake", log=log.append)

    assert log[0] == "re-creating sandbox for fake"
    assert run_in(again, "import vox_protocol; print('ok')") == "ok"


def test_remove(make_manager: MakeManager, source: RunnerSource, root: Path) -> None:
    manager = make_manager(source)
    manager.ensure("fake")
    manager.remove("fake")
    assert not (root / "fake").exists()
    assert manager.get("fake") is None
    assert manager.list() == []
    assert leftovers(root) == []
    manager.remove("fake")  # idempotent
    manager.remove("never-built")


def test_adapter_names_are_normalized(make_manager: MakeManager, source: RunnerSource) -> None:
    manager = make_manager(source)
    assert manager.ensure("Fake") == manager.get("fake")


def test_unknown_adapter_caught_from_uv_when_extras_are_unknowable(
    make_manager: MakeManager, source: RunnerSource, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As with a pinned vox-runner from the index: no pyproject.toml to read the extras from.
    monkeypatch.setattr(RunnerSource, "adapters", lambda self: None)
    manager = make_manager(source)
    with pytest.raises(SandboxError, match=r"unknown adapter 'nope': .* has no such extra$"):
        manager.ensure("nope")
    assert manager.get("nope") is None
    assert sorted(p.name for p in root.iterdir()) == ["nope.lock"]

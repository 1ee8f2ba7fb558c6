"""Fixtures: a throwaway runner project next to a copy of the real protocol project."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import vox_protocol
from vox_sandboxes import RunnerSource, SandboxManager

FAKE_PYPROJECT = """\
[project]
name = "vox-runner"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["vox-protocol", "msgspec>=0.19"]

[project.optional-dependencies]
fake = {fake_extra}
other = []

[project.entry-points."vox.adapters"]
fake = "vox_runner:FakeAdapter"

[project.scripts]
vox-runner = "vox_runner:main"

[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["src/vox_runner"]
"""

FAKE_INIT = """\
\"\"\"A stand-in runner host for sandbox tests.\"\"\"
MARK = {mark!r}


class FakeAdapter:
    pass


def main() -> int:
    print("fake runner", MARK)
    return 0
"""


def write_fake_runner(project: Path, *, mark: str = "v1", fake_extra: str = "[]") -> None:
    (project / "src" / "vox_runner").mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(FAKE_PYPROJECT.format(fake_extra=fake_extra))
    (project / "src" / "vox_runner" / "__init__.py").write_text(FAKE_INIT.format(mark=mark))


@pytest.fixture(scope="session")
def real_protocol_dir() -> Path:
    init = vox_protocol.__file__
    assert init is not None
    project = Path(init).resolve().parents[2]
    if not (project / "pyproject.toml").is_file():
        pytest.skip("vox_protocol is not installed from a source tree")
    return project


@pytest.fixture
def projects(tmp_path: Path, real_protocol_dir: Path) -> tuple[Path, Path]:
    """(protocol dir, runner dir): a frozen copy of the protocol and the fake runner."""
    protocol = tmp_path / "src-tree" / "protocol"
    shutil.copytree(
        real_protocol_dir,
        protocol,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "dist", "build"),
    )
    runner = tmp_path / "src-tree" / "runners"
    write_fake_runner(runner)
    return protocol, runner


@pytest.fixture
def source(projects: tuple[Path, Path]) -> RunnerSource:
    return RunnerSource.from_projects(*projects)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "vox-home" / "sandboxes"


@pytest.fixture
def make_manager(root: Path) -> Callable[[RunnerSource], SandboxManager]:
    def make(source: RunnerSource) -> SandboxManager:
        return SandboxManager(root, source)

    return make


@pytest.fixture
def rewrite_runner() -> Callable[..., None]:
    """write_fake_runner(project, mark=..., fake_extra=...)."""
    return write_fake_runner

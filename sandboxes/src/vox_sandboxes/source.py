"""Where the vox-protocol and vox-runner packages installed into sandboxes come from."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOL_NAME = "vox-protocol"
RUNNER_NAME = "vox-runner"

# Generated files that appear in a source tree merely by running it; hashing them would make every
# import of the control plane look like a source change and re-create every sandbox.
_IGNORED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_IGNORED_SUFFIXES = (".pyc", ".pyo")


def normalize_name(name: str) -> str:
    """PEP 503/685 normalization, which is also how uv and pip compare extra names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_name(project_dir: Path) -> str | None:
    """The normalized [project].name of a project dir, or None if it has no readable pyproject."""
    data = _read_pyproject(project_dir)
    name = data.get("project", {}).get("name") if data is not None else None
    return normalize_name(name) if isinstance(name, str) else None


def _read_pyproject(project_dir: Path) -> dict[str, Any] | None:
    try:
        with (project_dir / "pyproject.toml").open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _project_files(project_dir: Path) -> Iterator[tuple[str, Path]]:
    yield "pyproject.toml", project_dir / "pyproject.toml"
    src = project_dir / "src"
    if not src.is_dir():
        return
    files: list[tuple[str, Path]] = []
    for path in src.rglob("*"):
        rel = path.relative_to(project_dir)
        if any(part in _IGNORED_DIRS for part in rel.parts) or path.suffix in _IGNORED_SUFFIXES:
            continue
        if path.is_file():
            files.append((rel.as_posix(), path))
    yield from sorted(files)


def hash_projects(*project_dirs: Path) -> str:
    """sha256 over each project's pyproject.toml and every file under its src/ (path + content)."""
    h = hashlib.sha256()
    for index, project_dir in enumerate(project_dirs):
        for rel, path in _project_files(project_dir):
            data = path.read_bytes()
            # Length-prefixed fields so that no two different trees can produce the same stream.
            header = f"{index}\0{rel}\0{len(data)}\0"
            h.update(header.encode())
            h.update(data)
    return h.hexdigest()


def hash_requirements(*requirements: str) -> str:
    """sha256 over requirement strings (the fallback when there is no source tree)."""
    return hashlib.sha256("\0".join(requirements).encode()).hexdigest()


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _local_project(spec: str) -> Path | None:
    path = Path(spec)
    return path if (path / "pyproject.toml").is_file() else None


@dataclass(frozen=True)
class RunnerSource:
    """Where the protocol and runner packages come from."""

    protocol: str  # a local project dir (path) or a requirement like "vox-protocol==0.1.0"
    runner: str  # a local project dir or "vox-runner==0.1.0"
    fingerprint: str  # sha256 over what will be installed

    @classmethod
    def from_projects(cls, protocol_dir: Path, runner_dir: Path) -> RunnerSource:
        """Local project dirs, installed as non-editable copies; fingerprinted by content."""
        protocol_dir, runner_dir = protocol_dir.resolve(), runner_dir.resolve()
        return cls(str(protocol_dir), str(runner_dir), hash_projects(protocol_dir, runner_dir))

    @classmethod
    def from_requirements(cls, protocol: str, runner: str) -> RunnerSource:
        """Requirement strings resolved from the package index."""
        return cls(protocol, runner, hash_requirements(protocol, runner))

    @classmethod
    def from_installed(cls, wheel_dir: Path) -> RunnerSource:
        """Wheels packed from the control environment's own installed protocol and runner."""
        from vox_sandboxes.wheels import repack

        protocol, runner = repack(PROTOCOL_NAME, wheel_dir), repack(RUNNER_NAME, wheel_dir)
        # The wheels' folders are named by their content hash: the paths fingerprint it.
        return cls(str(protocol), str(runner), hash_requirements(str(protocol), str(runner)))

    @classmethod
    def detect(cls, wheel_dir: Path | None = None) -> RunnerSource:
        """The workspace's protocol/ and runners/ projects; else, when installed from wheels,
        the installed packages packed into wheels in ``wheel_dir``; else the version pinned."""
        import vox_protocol

        init = getattr(vox_protocol, "__file__", None)
        if init is not None:
            # <project>/src/vox_protocol/__init__.py when installed editable from a source tree.
            protocol_dir = Path(init).resolve().parents[2]
            runner_dir = protocol_dir.parent / "runners"
            if (
                project_name(protocol_dir) == PROTOCOL_NAME
                and project_name(runner_dir) == RUNNER_NAME
            ):
                return cls.from_projects(protocol_dir, runner_dir)
        if wheel_dir is not None and _installed(RUNNER_NAME):
            return cls.from_installed(wheel_dir)
        version = importlib.metadata.version(PROTOCOL_NAME)
        try:
            runner_version = importlib.metadata.version(RUNNER_NAME)
        except importlib.metadata.PackageNotFoundError:
            # The two packages are released in lockstep.
            runner_version = version
        return cls.from_requirements(
            f"{PROTOCOL_NAME}=={version}", f"{RUNNER_NAME}=={runner_version}"
        )

    @property
    def protocol_project(self) -> Path | None:
        """The protocol project dir, or None when it is a requirement."""
        return _local_project(self.protocol)

    @property
    def runner_project(self) -> Path | None:
        """The runner project dir, or None when it is a requirement."""
        return _local_project(self.runner)

    @property
    def runner_wheel(self) -> Path | None:
        """The runner wheel file, or None when it is a project dir or a requirement."""
        return Path(self.runner) if self.runner.endswith(".whl") else None

    def adapters(self) -> dict[str, list[str]] | None:
        """Known adapters (runner extras) and their requirements, or None when unknowable."""
        runner_dir = self.runner_project
        if runner_dir is not None:
            data = _read_pyproject(runner_dir) or {}
            extras = data.get("project", {}).get("optional-dependencies", {})
            return {normalize_name(k): [str(r) for r in v] for k, v in extras.items()}
        return self._installed_runner_extras()

    def _installed_runner_extras(self) -> dict[str, list[str]] | None:
        # Without a source tree, the control env's own vox-runner metadata tells the extras, but
        # only if it is the very version the sandbox will get.
        try:
            dist = importlib.metadata.distribution(RUNNER_NAME)
        except importlib.metadata.PackageNotFoundError:
            return None
        wheel = self.runner_wheel
        pinned = f"{RUNNER_NAME}=={dist.version}"
        if self.runner != pinned and (wheel is None or f"-{dist.version}-" not in wheel.name):
            return None
        from packaging.requirements import Requirement  # only here: a start need not load it

        extras: dict[str, list[str]] = {}
        for extra in dist.metadata.get_all("Provides-Extra") or []:
            name = normalize_name(extra)
            extras[name] = [
                str(Requirement(r)).split(";")[0].strip()
                for r in dist.requires or []
                if (req := Requirement(r)).marker is not None
                and "extra" in str(req.marker)
                and req.marker.evaluate({"extra": name})
            ]
        return extras

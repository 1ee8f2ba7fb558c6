"""Third-party adapter packages: what an entry's ``adapter_package`` names (docs/adapters.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from vox_sandboxes.errors import SandboxError
from vox_sandboxes.source import hash_projects, normalize_name, project_name

_MAX_SPEC = 1024


@dataclass(frozen=True)
class AdapterPackage:
    """A package that brings an adapter: ``name==version``, a wheel file or a project dir."""

    spec: str
    kind: Literal["pypi", "wheel", "project"]
    name: str  # normalized distribution name

    @property
    def key(self) -> str:
        """Short, stable id of the spec: sandboxes of two packages never share a directory."""
        return hashlib.sha256(self.spec.encode()).hexdigest()[:12]

    def content_hash(self) -> str:
        """What the sandbox holds of it: a wheel's bytes, a project's files, or the pin."""
        if self.kind == "wheel":
            return hashlib.sha256(Path(self.spec).read_bytes()).hexdigest()
        if self.kind == "project":
            return hash_projects(Path(self.spec))
        return hashlib.sha256(self.spec.encode()).hexdigest()


def parse_package(spec: str) -> AdapterPackage:
    """Validate an ``adapter_package`` spec (shape only: files are checked when installed).

    A requirement must pin one exact version, so a sandbox never changes under a model
    because an index published something; paths must be absolute.
    """
    # packaging loads on the first spec (its grammar compiles regexes on import), not at start.
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    spec = spec.strip()
    if not spec or len(spec) > _MAX_SPEC or not spec.isprintable():
        raise ValueError("adapter_package must be name==version, a .whl path or a project dir")
    if spec.startswith("/"):
        path = PurePosixPath(spec)
        if ".." in path.parts:
            raise ValueError(f"adapter_package {spec!r} must not contain '..'")
        if path.suffix == ".whl":
            try:
                name = parse_wheel_filename(path.name)[0]
            except InvalidWheelFilename as exc:
                raise ValueError(f"adapter_package {spec!r}: {exc}") from exc
            return AdapterPackage(str(path), "wheel", normalize_name(name))
        return AdapterPackage(str(path), "project", "")
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise ValueError(f"adapter_package {spec!r}: {exc}") from exc
    pins = list(req.specifier)
    exact = len(pins) == 1 and pins[0].operator == "==" and "*" not in pins[0].version
    if req.url or req.marker or req.extras or not exact:
        raise ValueError(f"adapter_package {spec!r} must pin one version: name==version")
    return AdapterPackage(str(req), "pypi", normalize_name(req.name))


def resolve_package(package: AdapterPackage) -> AdapterPackage:
    """The package with its files checked: a wheel that exists, a dir with a named project."""
    if package.kind == "wheel" and not Path(package.spec).is_file():
        raise SandboxError(f"adapter package {package.spec} is not a file")
    if package.kind == "project":
        name = project_name(Path(package.spec))
        if name is None:
            raise SandboxError(f"adapter package {package.spec} has no readable pyproject.toml")
        return AdapterPackage(package.spec, "project", name)
    return package

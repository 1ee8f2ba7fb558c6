"""Local source: a directory on this machine, copied (and hashed) into the store."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from vox_control.store.disk import Manifest, ManifestFile, Store
from vox_control.store.registry import RESERVED_FILES, CatalogEntry, LocalSource
from vox_control.store.sources.base import (
    Emitter,
    IntegrityError,
    ProgressCallback,
    PullError,
    PullEvent,
    UnsupportedSource,
    copy_hashing,
    install,
    run_blocking,
)


def list_files(source: LocalSource) -> list[tuple[Path, str]]:
    """(absolute file, stored path) for every file to copy; hidden files and links are skipped."""
    root = Path(source.path)
    if not root.is_dir():
        raise PullError(f"{root} is not a directory")
    if source.files:
        found = [(root / f.path, f.path) for f in source.files]
        missing = [rel for path, rel in found if not path.is_file()]
        if missing:
            raise PullError(f"not in {root}: {', '.join(missing)}")
        return found
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden folders (.git, .cache) are tooling, not model files.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            if rel in RESERVED_FILES:
                raise PullError(f"{path}: the name {rel} is reserved for the store")
            found.append((path, rel))
    if not found:
        raise PullError(f"{root} holds no files")
    return found


def copy_files(
    source: LocalSource, staging: Path, emit: Emitter, stop: threading.Event
) -> list[ManifestFile]:
    pinned = {f.path: f for f in source.files}
    files = []
    for path, rel in list_files(source):
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        total = path.stat().st_size
        digest = hashlib.sha256()

        def on_chunk(n: int, rel: str = rel, total: int = total) -> None:
            emit.progress("copying", rel, n, total)

        emit.progress("copying", rel, 0, total)
        with path.open("rb") as src, dest.open("wb") as out:
            done = copy_hashing(src, out, digest, 0, None, on_chunk, stop, rel)
            out.flush()
            os.fsync(out.fileno())
        if done != total:
            raise PullError(f"{path} changed while it was copied")
        spec = pinned.get(rel)
        if spec is not None and spec.sha256 and digest.hexdigest() != spec.sha256:
            raise IntegrityError(rel, spec.sha256, digest.hexdigest())
        files.append(ManifestFile(path=rel, size=done, sha256=digest.hexdigest()))
    return files


async def pull_local(
    entry: CatalogEntry, store: Store, *, progress: ProgressCallback | None = None
) -> Manifest:
    """Copy the entry's directory into the store; returns at once if already installed."""
    source = entry.source
    if not isinstance(source, LocalSource):
        raise UnsupportedSource(f"{entry.name} is not a local directory (source {source.kind!r})")

    async def fetch(staging: Path, emit: Emitter) -> list[ManifestFile]:
        emit(PullEvent(status=f"copying from {source.path}"))
        return await run_blocking(lambda stop: copy_files(source, staging, emit, stop))

    def build(files: list[ManifestFile]) -> Manifest:
        return Manifest.build(entry, files, time.time())

    return await install(store, entry.name, build, fetch, progress)

"""Local sources: a directory under an allowed root, or a tar stream the CLI uploads.

Over HTTP a client names paths on the server's machine, so a directory is read only where
the server was started with ``--allow-local-dir ROOT`` and its real path lies inside a root;
``vox pull ./dir`` on the same host instead uploads the files it can read itself. Either way
the copies are private (0600 or narrower, inside the store's 0700 directories).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, Any

from vox_control.store.disk import Manifest, ManifestFile, Store
from vox_control.store.entries import RESERVED_FILES, CatalogEntry, LocalSource, check_relpath
from vox_control.store.sources.base import (
    CHUNK,
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

# One message whether the path is missing, unreadable or outside every root: the answer
# must not tell a client what exists on the server's machine.
REFUSED = (
    "directory sources over HTTP are limited to the roots the server allows "
    "(vox serve --allow-local-dir ROOT); from this host, `vox pull ./dir --adapter NAME "
    "--as family:tag` uploads the files instead"
)
MAX_UPLOAD_FILES = 10_000


class LocalDirRefused(PullError):
    """A directory outside the allowed roots, or one that does not exist (never said which)."""

    status = 400  # the request's source, not an upstream failure
    type = "invalid_request_error"
    code = "local_dir_refused"

    def __init__(self) -> None:
        super().__init__(REFUSED, param="source")


class BadUpload(PullError):
    """An uploaded tar stream that is not a plain set of model files."""

    status = 400
    type = "invalid_request_error"
    code = "bad_upload"


class ChunkReader(io.RawIOBase):
    """A blocking file over an async iterator of chunks, read from a worker thread.

    Each read asks the event loop for the next chunk, so a slow disk slows the upload down
    instead of buffering it in memory.
    """

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._chunks = chunks
        self._loop = loop
        self._buffer = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes:
        return await anext(self._chunks)

    def readinto(self, buffer: Any) -> int:
        while not self._buffer and not self._eof:
            try:
                self._buffer = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            except StopAsyncIteration:
                self._eof = True
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def allowed_dir(path: str, roots: Sequence[Path]) -> Path:
    """The real path of directory ``path`` if it lies inside one of ``roots``, else refuse."""
    try:
        real = Path(path).resolve(strict=True)
        inside = any(real.is_relative_to(root.resolve(strict=True)) for root in roots)
    except (OSError, RuntimeError, ValueError):
        raise LocalDirRefused from None
    if not inside or not real.is_dir():
        raise LocalDirRefused
    return real


def private_mode(mode: int) -> int:
    """The source's owner bits only, never wider than 0600, and always readable by the owner."""
    return (stat.S_IMODE(mode) & 0o600) | 0o400


def _create(staging: Path, rel: str, mode: int) -> IO[bytes]:
    dest = staging / rel
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    return os.fdopen(os.open(dest, flags, private_mode(mode)), "wb")


def _store_file(
    src: IO[bytes],
    staging: Path,
    rel: str,
    mode: int,
    total: int,
    emit: Emitter,
    stop: threading.Event,
    status: str,
) -> tuple[int, str]:
    """Copy ``src`` into ``staging/rel`` privately; returns (bytes, sha256)."""
    digest = hashlib.sha256()

    def on_chunk(n: int) -> None:
        emit.progress(status, rel, n, total)

    emit.progress(status, rel, 0, total)
    with _create(staging, rel, mode) as out:
        done = copy_hashing(src, out, digest, 0, total, on_chunk, stop, rel)
        out.flush()
        os.fsync(out.fileno())
    return done, digest.hexdigest()


def walk_files(root: Path) -> list[tuple[Path, str]]:
    """(file, stored path) for every file under ``root``; hidden files and links are skipped.

    The CLI walks a directory it uploads with this too, so both ways take the same files.
    """
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
                raise PullError(f"{rel}: the name is reserved for the store")
            found.append((path, rel))
    if not found:
        raise PullError(f"{root} holds no files")
    return found


def list_files(root: Path, source: LocalSource) -> list[tuple[Path, str]]:
    """The files of ``source`` (its pinned list, or all of ``root``, its real path)."""
    if not source.files:
        return walk_files(root)
    found = [(root / f.path, f.path) for f in source.files]
    # A listed path may run through a link inside the directory: it must stay inside.
    missing = [
        rel for path, rel in found if not path.is_file() or not path.resolve().is_relative_to(root)
    ]
    if missing:
        raise PullError(f"not in {source.path}: {', '.join(missing)}")
    return found


def copy_files(
    root: Path, source: LocalSource, staging: Path, emit: Emitter, stop: threading.Event
) -> list[ManifestFile]:
    pinned = {f.path: f for f in source.files}
    files = []
    for path, rel in list_files(root, source):
        with path.open("rb") as src:
            st = os.fstat(src.fileno())
            done, digest = _store_file(
                src, staging, rel, st.st_mode, st.st_size, emit, stop, "copying"
            )
        if done != st.st_size:
            raise PullError(f"{rel} changed while it was copied")
        spec = pinned.get(rel)
        if spec is not None and spec.sha256 and digest != spec.sha256:
            raise IntegrityError(rel, spec.sha256, digest)
        files.append(ManifestFile(path=rel, size=done, sha256=digest))
    return files


def extract_upload(
    stream: IO[bytes], staging: Path, emit: Emitter, stop: threading.Event
) -> list[ManifestFile]:
    """Unpack an uploaded tar stream of plain files into ``staging``; anything else is refused."""
    files: list[ManifestFile] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
            for member in tar:
                if member.isdir():
                    continue
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                    raise BadUpload(f"{member.name!r}: only regular files may be uploaded")
                try:
                    check_relpath(member.name, "uploaded file")
                except ValueError as exc:
                    raise BadUpload(str(exc)) from None
                if member.name in RESERVED_FILES:
                    raise BadUpload(f"{member.name}: the name is reserved for the store")
                if len(files) >= MAX_UPLOAD_FILES:
                    raise BadUpload(f"an upload holds at most {MAX_UPLOAD_FILES} files")
                src = tar.extractfile(member)
                assert src is not None  # a regular file always has a data stream
                try:
                    done, digest = _store_file(
                        src, staging, member.name, member.mode, member.size, emit, stop, "receiving"
                    )
                except (FileExistsError, NotADirectoryError, IsADirectoryError):
                    raise BadUpload(
                        f"{member.name!r} appears twice or clashes with a folder"
                    ) from None
                if done != member.size:
                    raise BadUpload(f"{member.name}: the upload ended early")
                files.append(ManifestFile(path=member.name, size=done, sha256=digest))
    except tarfile.TarError as exc:
        raise BadUpload(f"the upload is not a valid tar stream: {exc}") from None
    if not files:
        raise BadUpload("the upload holds no files")
    return files


async def pull_local(
    entry: CatalogEntry,
    store: Store,
    *,
    roots: Sequence[Path] = (),
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Copy the entry's directory into the store if it lies inside ``roots``."""
    source = entry.source
    if not isinstance(source, LocalSource):
        raise UnsupportedSource(f"{entry.name} is not a local directory (source {source.kind!r})")

    async def fetch(staging: Path, emit: Emitter) -> list[ManifestFile]:
        # Checked at pull time too: the directory may have become a link since registration.
        root = allowed_dir(source.path, roots)
        emit(PullEvent(status=f"copying from {source.path}"))
        return await run_blocking(lambda stop: copy_files(root, source, staging, emit, stop))

    return await install(store, entry.name, _builder(entry), fetch, progress)


async def install_upload(
    entry: CatalogEntry, store: Store, stream: IO[bytes], progress: ProgressCallback | None = None
) -> Manifest:
    """Install an uploaded tar stream as ``entry``, replacing what was installed under its name."""

    async def fetch(staging: Path, emit: Emitter) -> list[ManifestFile]:
        return await run_blocking(lambda stop: extract_upload(stream, staging, emit, stop))

    return await install(store, entry.name, _builder(entry), fetch, progress, replace=True)


def _builder(entry: CatalogEntry) -> Callable[[list[ManifestFile]], Manifest]:
    return lambda files: Manifest.build(entry, files, time.time())

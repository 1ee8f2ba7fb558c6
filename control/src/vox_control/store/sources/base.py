"""What every source shares: pull events, errors, and the locked, staged, atomic install."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Protocol, TypeVar

import filelock
import msgspec

from vox_control.errors import UpstreamFailed
from vox_control.store.disk import Manifest, ManifestFile, Store

T = TypeVar("T")

CHUNK = 1 << 20
ETAG = ".etag"  # suffix of the file that keeps a partial download's validator
EVENT_INTERVAL = 0.1  # seconds between two progress events of one file


class Hasher(Protocol):
    """What copy_hashing needs of a hashlib object (whose class is private to hashlib)."""

    def update(self, data: bytes, /) -> None: ...


class PullEvent(msgspec.Struct, omit_defaults=True):
    """One progress line, shaped like Ollama's pull NDJSON."""

    status: str
    file: str | None = None
    completed: int | None = None
    total: int | None = None


ProgressCallback = Callable[[PullEvent], None]


class PullError(UpstreamFailed):
    """A pull failed; the message says why in words a user can act on."""

    code = "pull_failed"


class IntegrityError(PullError):
    """A downloaded or assembled file does not have the expected digest or size."""

    code = "integrity_error"

    def __init__(self, file: str, expected: str, actual: str, what: str = "sha256") -> None:
        super().__init__(f"{file}: {what} mismatch: expected {expected}, got {actual}")
        self.file = file
        self.expected = expected
        self.actual = actual


class OfflineError(PullError):
    """The pull would need the network and VOX_OFFLINE forbids it."""

    status = 503  # the server's situation, not the request's
    code = "offline"


class UnsupportedSource(PullError, NotImplementedError):
    """The entry's source kind has no downloader yet."""


class Emitter:
    """Calls the progress callback, rate-limited per file: at most one event every 100 ms."""

    def __init__(
        self, progress: ProgressCallback | None, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._progress = progress
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._last: dict[str | None, float] = {}

    def __call__(self, event: PullEvent) -> None:
        if self._progress is None:
            return
        # Worker threads hand events to the loop: callbacks usually feed asyncio queues.
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._progress, event)
        else:
            self._progress(event)

    def progress(self, status: str, file: str, completed: int, total: int | None) -> None:
        """A progress event, dropped if this file had one <100 ms ago, unless it is the last."""
        now = time.monotonic()
        done = total is not None and completed >= total
        if not done and now - self._last.get(file, -1e9) < EVENT_INTERVAL:
            return
        self._last[file] = now
        self(PullEvent(status=status, file=file, completed=completed, total=total))


class Stopped(Exception):
    """Raised inside a worker thread when the pull it serves was cancelled."""


async def run_blocking(fn: Callable[[threading.Event], T]) -> T:
    """Run ``fn(stop)`` in a thread; on cancellation set ``stop`` and wait for the thread.

    Waiting matters: the caller removes the staging directory next, and must not do so while
    the thread is still writing into it.
    """
    stop = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(fn, stop))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        with contextlib.suppress(BaseException):
            task.result()  # retrieve it, so asyncio does not warn about an unseen exception
        raise


def copy_hashing(
    src: IO[bytes],
    out: IO[bytes],
    digest: Hasher,
    done: int,
    limit: int | None,
    on_chunk: Callable[[int], None],
    stop: threading.Event,
    label: str,
) -> int:
    """Stream ``src`` into ``out`` in 1 MiB chunks, hashing; returns the new byte count."""
    while chunk := src.read(CHUNK):
        if stop.is_set():
            raise Stopped
        out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if limit is not None and done > limit:
            raise PullError(f"{label}: more data than the expected {limit} bytes")
        on_chunk(done)
    return done


async def acquire(lock: filelock.BaseFileLock, emit: Emitter, name: str) -> None:
    """Take ``lock`` without blocking the event loop; safe to cancel while waiting."""
    waiting = False
    while True:
        try:
            lock.acquire(blocking=False)
            return
        except filelock.Timeout:
            pass
        if not waiting:
            emit(PullEvent(status=f"waiting for another pull of {name}"))
            waiting = True
        await asyncio.sleep(0.1)


Fetch = Callable[[Path, Emitter], Awaitable[list[ManifestFile]]]


def _drop_if_empty(partial: Path) -> None:
    """Remove a model's partial directory unless it holds bytes worth resuming."""
    try:
        worth = any(p.stat().st_size for p in partial.iterdir() if not p.name.endswith(ETAG))
    except OSError:
        return  # not there
    if not worth:
        shutil.rmtree(partial, ignore_errors=True)


async def install(
    store: Store,
    name: str,
    build: Callable[[list[ManifestFile]], Manifest],
    fetch: Fetch,
    progress: ProgressCallback | None,
    *,
    replace: bool = False,
) -> Manifest:
    """Fetch ``name`` into a staging dir under its model lock and commit it atomically.

    Already installed (before or after waiting for the lock): returns its manifest with only a
    "success" event, unless ``replace`` (an upload brings new files whatever is installed).
    Any failure or cancellation leaves nothing installed and no staging dir, except the
    model's partial downloads, which the next pull of it resumes.
    """
    emit = Emitter(progress, asyncio.get_running_loop())
    if store.is_installed(name) and not replace:
        emit(PullEvent(status="success"))
        return store.manifest(name)
    lock = store.model_lock(name)
    await acquire(lock, emit, name)
    try:
        if store.is_installed(name) and not replace:
            # Someone else pulled it while we waited.
            emit(PullEvent(status="success"))
            return store.manifest(name)
        try:
            with store.staging() as staging:
                files = await fetch(staging, emit)
                emit(PullEvent(status="writing manifest"))
                manifest = store.commit(staging, build(files))
            shutil.rmtree(store.partial(name), ignore_errors=True)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise PullError(
                    f"not enough disk space to pull {name} into {store.root}: {exc.strerror}"
                ) from exc
            raise PullError(f"cannot write {name} into {store.root}: {exc}") from exc
    finally:
        _drop_if_empty(store.partial(name))
        store.release_model_lock(name, lock)
    emit(PullEvent(status="success"))
    return manifest

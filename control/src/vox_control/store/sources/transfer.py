"""Downloads every source shares: resumable, verified, retried, a few files at once.

A download lives in the model's partial directory under a name derived from what it is, so
a later try, or a later run after a crash, continues it with an HTTP Range request (with
If-Range on the ETag the server gave) instead of starting over; the final digest is checked
either way, and a resumed file that fails it is fetched once more from the start.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

import httpx
import msgspec

from vox_control.store.sources.base import (
    CHUNK,
    ETAG,
    Emitter,
    IntegrityError,
    PullEvent,
    Stopped,
    run_blocking,
)
from vox_control.store.sources.retry import (
    DEFAULT_POLICY,
    CutShort,
    RetryPolicy,
    Tries,
    check_status,
    retrying,
)

T = TypeVar("T")
R = TypeVar("R")

_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")


class Download(msgspec.Struct, frozen=True):
    """One file to fetch: where from, what events call it, and what it must be."""

    url: str
    name: str  # a file name for events and errors: never the URL, which may carry secrets
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None  # a git blob id: sha1 of "blob <size>\0" + content

    @property
    def key(self) -> str:
        """Its name in the partial directory: the same file of the same content, same key."""
        what = self.sha256 or self.git_sha1 or self.url
        return hashlib.sha256(f"{self.name}\0{what}".encode()).hexdigest()[:32]


def _open_for_append(path: Path) -> BinaryIO:
    # One seam for every byte a download writes (tests use it to simulate a full disk).
    return path.open("ab")


class _Partial:
    """A download's bytes so far on disk, their running digests, and its validator."""

    def __init__(self, item: Download, directory: Path) -> None:
        self.item = item
        self.path = directory / item.key
        self.etag_path = directory / f"{item.key}{ETAG}"
        self.total = item.size
        self.resumed = False
        self._reset_digests()
        self.size = 0

    def _reset_digests(self) -> None:
        self.sha256 = hashlib.sha256()
        self.sha1 = None
        if self.item.git_sha1 is not None and self.item.size is not None:
            self.sha1 = hashlib.sha1(usedforsecurity=False)
            self.sha1.update(f"blob {self.item.size}\0".encode())

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        self.size += len(data)

    def load(self, stop: threading.Event) -> None:
        """Hash what an earlier run left, once; later tries keep the running digests."""
        try:
            src = self.path.open("rb")
        except FileNotFoundError:
            return
        with src:
            while chunk := src.read(CHUNK):
                if stop.is_set():
                    raise Stopped
                self.update(chunk)
        self.resumed = self.size > 0

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)
        self.etag_path.unlink(missing_ok=True)
        self._reset_digests()
        self.size = 0
        self.total = self.item.size

    def etag(self) -> str | None:
        try:
            return self.etag_path.read_text().strip() or None
        except OSError:
            return None

    def keep_etag(self, value: str | None) -> None:
        # If-Range needs a strong validator; a weak one is worth nothing to a resume.
        if value and not value.startswith("W/"):
            self.etag_path.write_text(value)

    def verify(self) -> str:
        """Check size and digests of the whole file; returns its sha256."""
        item = self.item
        with self.path.open("rb") as f:
            os.fsync(f.fileno())
        if self.total is not None and self.size != self.total:
            raise IntegrityError(item.name, f"{self.total} bytes", f"{self.size}", what="size")
        actual = self.sha256.hexdigest()
        if item.sha256 is not None and actual != item.sha256:
            raise IntegrityError(item.name, item.sha256, actual)
        sha1 = self.sha1.hexdigest() if self.sha1 is not None else None
        if item.git_sha1 is not None and sha1 is not None and sha1 != item.git_sha1:
            raise IntegrityError(item.name, item.git_sha1, sha1, what="git blob sha1")
        return actual


def _range_start(resp: httpx.Response) -> tuple[int | None, int | None]:
    found = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
    if found is None:
        return None, None
    start = int(found[1]) if found[1] is not None else None
    total = int(found[3]) if found[3] != "*" else None
    return start, total


def _attempt(
    http: httpx.Client,
    part: _Partial,
    emit: Emitter,
    stop: threading.Event,
    tries: Tries,
    auth: httpx.Auth | None,
) -> None:
    """One GET: continue the file from where it stands; raises to be retried or to fail."""
    item = part.item
    if part.total is not None and part.size >= part.total:
        return  # complete already (or too long, which verify() says)
    # Ranges, sizes and digests are of the file's own bytes: no transfer compression.
    headers = {"Accept-Encoding": "identity"}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
        if etag := part.etag():
            headers["If-Range"] = etag
    request = http.build_request("GET", item.url, headers=headers)
    resp = http.send(request, stream=True, auth=auth, follow_redirects=True)
    try:
        start, total = _range_start(resp)
        if resp.status_code == 416 and part.size:
            if total == part.size:
                return  # the server says we have every byte; the digest check decides
            part.reset()
            raise CutShort(f"{item.name}: the server refused the range")
        check_status(resp, item.name)
        if resp.status_code == 206:
            if start != part.size or (item.size is not None and total != item.size):
                part.reset()
                raise CutShort(f"{item.name}: the server sent another range")
            part.total = total if total is not None else part.total
        else:
            if part.size:
                # The server ignored the range (or the file changed): start over, honestly.
                emit(PullEvent(status=f"restarting {item.name}: the server cannot resume it"))
                part.reset()
            length = resp.headers.get("content-length", "")
            if part.total is None and length.isdigit():
                part.total = int(length)
        part.keep_etag(resp.headers.get("etag"))
        emit.progress("downloading", item.name, part.size, part.total)
        with _open_for_append(part.path) as out:
            for data in resp.iter_bytes():
                if stop.is_set():
                    raise Stopped
                out.write(data)
                out.flush()  # what is on disk is what was hashed: a crash loses nothing more
                part.update(data)
                if part.total is not None and part.size > part.total:
                    raise IntegrityError(
                        item.name, f"{part.total} bytes", "more than that", what="size"
                    )
                tries.progressed()
                emit.progress("downloading", item.name, part.size, part.total)
    finally:
        resp.close()
    if part.total is not None and part.size < part.total:
        raise CutShort(f"{item.name}: {part.size} of {part.total} bytes")


def download(
    http: httpx.Client,
    item: Download,
    directory: Path,
    emit: Emitter,
    stop: threading.Event,
    policy: RetryPolicy = DEFAULT_POLICY,
    auth: httpx.Auth | None = None,
) -> tuple[Path, int, str]:
    """Fetch ``item`` into ``directory``, resuming what is there; (path, size, sha256).

    A file that fails its digest is deleted; if it had been resumed, it is fetched once more
    from the start before the pull fails, since the earlier bytes may be what was wrong.
    """
    part = _Partial(item, directory)
    part.load(stop)
    if part.resumed:
        # A file an earlier run finished is only checked again; a partial one is continued.
        done = part.total is not None and part.size >= part.total
        status = "downloading" if done else "resuming"
        emit(PullEvent(status=status, file=item.name, completed=part.size, total=part.total))
    tries = Tries(policy, emit, stop, item.name)
    while True:
        try:
            retrying(lambda: _attempt(http, part, emit, stop, tries, auth), tries)
            emit(PullEvent(status="verifying", file=item.name))
            actual = part.verify()
        except IntegrityError:
            again = part.resumed
            part.reset()
            if not again:
                raise
            part.resumed = False
            emit(PullEvent(status=f"restarting {item.name}: the resumed file did not verify"))
            continue
        if part.total is None:
            emit.progress("downloading", item.name, part.size, part.size)
        part.etag_path.unlink(missing_ok=True)
        return part.path, part.size, actual


def keep_only(directory: Path, items: Sequence[Download]) -> None:
    """Drop what ``directory`` holds for anything else (another revision, a stale try)."""
    wanted = {item.key for item in items} | {f"{item.key}{ETAG}" for item in items}
    for path in directory.iterdir():
        if path.name in wanted:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


async def each(
    items: Sequence[T], work: Callable[[T, threading.Event], R], concurrency: int
) -> list[R]:
    """``work(item, stop)`` for every item in threads, ``concurrency`` at once; fails as one.

    The first failure cancels the others (their threads stop at their next chunk) and is
    raised as itself, not wrapped in a group.
    """
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(item: T) -> R:
        async with limit:
            return await run_blocking(lambda stop: work(item, stop))

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]

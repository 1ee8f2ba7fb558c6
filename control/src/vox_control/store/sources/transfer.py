"""Network transfers every source shares: retries with backoff, resumable downloads, a pool.

One implementation for the Hub and for package indexes. A transfer is retried after
connection errors, stalls and 5xx/429 answers (honouring ``Retry-After``), with exponential
backoff and jitter, until it makes no progress ``attempts`` times in a row or has waited
``max_wait`` seconds in all. A download lives in the model's partial directory under a name
derived from what it is, so a later try, or a later run after a crash, continues it with an
HTTP Range request instead of starting over; the final digest is checked either way.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import hashlib
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

import httpx
import msgspec

from vox_control.store.sources.base import (
    CHUNK,
    ETAG,
    Emitter,
    IntegrityError,
    PullError,
    PullEvent,
    Stopped,
    run_blocking,
)

T = TypeVar("T")
R = TypeVar("R")

_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")


class RetryPolicy(msgspec.Struct, frozen=True):
    """How hard a pull tries before it gives up, and how long it waits for a silent server."""

    attempts: int = 6  # failures in a row without a byte of progress
    base_delay: float = 0.5  # the first wait; doubled per failure in a row, then jittered
    max_delay: float = 30.0
    max_wait: float = 600.0  # seconds one transfer may spend waiting between tries, in all
    connect_timeout: float = 30.0
    stall_timeout: float = 60.0  # seconds without a byte before a connection counts as stalled

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.stall_timeout, connect=self.connect_timeout)


DEFAULT_POLICY = RetryPolicy()


class RetryableStatus(Exception):
    """The server answered with a status worth another try (5xx, 429, 408)."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class CutShort(Exception):
    """The body ended (cleanly) before the size the server or the index announced."""


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds from now (delta-seconds or an HTTP date), if present."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def check_status(resp: httpx.Response, what: str) -> None:
    """Raise for an answer that is not a success: retryable ones apart from final ones."""
    status = resp.status_code
    if status < 300:
        return
    if status >= 500 or status in (408, 429):
        raise RetryableStatus(status, retry_after(resp.headers))
    if status in (401, 403):
        raise PullError(f"{what}: access refused (HTTP {status}); check the credentials")
    if status == 404:
        raise PullError(f"{what}: not found (HTTP 404)")
    raise PullError(f"{what}: HTTP {status}")


# Transport failures by class name, most specific first: httpx and its fork httpx2 (which
# huggingface_hub 2.x speaks through) share the names but not the classes.
_TRANSPORT = (
    ("ConnectTimeout", "connect timed out"),
    ("ReadTimeout", "stalled"),
    ("WriteTimeout", "write timed out"),
    ("PoolTimeout", "no free connection"),
    ("ConnectError", "cannot connect"),
    ("RemoteProtocolError", "connection closed early"),
    ("ReadError", "connection reset"),
    ("WriteError", "connection reset"),
    ("TransportError", "network error"),
)
_RESET = (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT)


def reason(exc: BaseException) -> str | None:
    """Why ``exc`` is worth another try, in words; None when it is not (a 404, a bad digest)."""
    if isinstance(exc, RetryableStatus):
        return f"HTTP {exc.status}"
    if isinstance(exc, CutShort):
        return "connection closed early"
    # huggingface_hub's HTTP errors carry the response: a 503 from the API is one too.
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}" if status >= 500 or status in (408, 429) else None
    names = {cls.__name__ for cls in type(exc).__mro__}
    for name, words in _TRANSPORT:
        if name in names:
            return words
    if isinstance(exc, ConnectionError | TimeoutError) or (
        isinstance(exc, OSError) and exc.errno in _RESET
    ):
        return "connection reset"
    return None


def _after(exc: BaseException) -> float | None:
    if isinstance(exc, RetryableStatus):
        return exc.retry_after
    headers = getattr(getattr(exc, "response", None), "headers", None)
    return retry_after(headers) if headers is not None else None


def _seconds(delay: float) -> str:
    if delay >= 0.95:
        return f"{delay:.0f} s"
    return f"{delay:.1f} s" if delay >= 0.1 else f"{delay:.2f} s"


class Tries:
    """The retry bookkeeping of one transfer: backoff with jitter, Retry-After, the budget."""

    def __init__(
        self,
        policy: RetryPolicy,
        emit: Emitter,
        stop: threading.Event,
        label: str,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._emit = emit
        self._stop = stop
        self.label = label
        self._jitter = jitter
        self.failures = 0  # in a row, without progress
        self.waited = 0.0

    def progressed(self) -> None:
        """Bytes arrived: the next failure starts the backoff afresh."""
        self.failures = 0

    def again(self, exc: Exception) -> bool:
        """After ``exc``: False if it is final; else wait (visibly) and True, or give up."""
        why = reason(exc)
        if why is None:
            return False
        self.failures += 1
        policy = self.policy
        if self.failures >= policy.attempts:
            raise PullError(f"{self.label}: gave up after {self.failures} tries: {why}") from exc
        full = min(policy.max_delay, policy.base_delay * 2 ** (self.failures - 1))
        delay = full / 2 + self._jitter() * full / 2  # "equal jitter": spread, never zero
        asked = _after(exc)
        if asked is not None:
            delay = max(delay, asked)
        if self.waited + delay > policy.max_wait:
            raise PullError(
                f"{self.label}: gave up: {why}, and waiting {_seconds(delay)} more would pass "
                f"the {policy.max_wait:.0f} s limit"
            ) from exc
        self._emit(PullEvent(status=f"retrying in {_seconds(delay)}: {why}", file=self.label))
        self.waited += delay
        if self._stop.wait(delay):
            raise Stopped
        return True


def retrying(attempt: Callable[[], T], tries: Tries) -> T:
    """``attempt()`` until it succeeds, or fails for good (final error, or out of tries)."""
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not tries.again(exc):
                raise


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
    headers: dict[str, str] = {}
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
        emit(PullEvent(status="resuming", file=item.name, completed=part.size, total=part.total))
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

"""Retries every source shares: what is worth another try, backoff with jitter, the budget.

A transfer is retried after connection errors, stalls and 5xx/429/408 answers (honouring
``Retry-After``), with exponential backoff and jitter, until it fails ``attempts`` times in
a row without progress or has waited ``max_wait`` seconds in all. Every wait is announced
in the progress stream (``retrying in 2 s: connection reset``).
"""

from __future__ import annotations

import email.utils
import errno
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import httpx
import msgspec

from vox_control.store.sources.base import Emitter, PullError, PullEvent, Stopped

T = TypeVar("T")


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
_TRANSPORT: tuple[tuple[str, str | None], ...] = (
    ("UnsupportedProtocol", None),  # a URL no retry can fix
    ("LocalProtocolError", None),
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
                if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
                    # A bad URL, say: still the pull's failure, in its words.
                    raise PullError(f"{tries.label}: {exc}") from exc
                raise

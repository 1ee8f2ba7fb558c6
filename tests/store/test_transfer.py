"""The shared transfer rules: what is retried, how long it waits, when it gives up; staging."""

from __future__ import annotations

import email.utils
import errno
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from vox_control.store.disk import PARTIAL_MAX_AGE, Store
from vox_control.store.sources import PullError, PullEvent, RetryPolicy
from vox_control.store.sources.base import Emitter, Stopped
from vox_control.store.sources.retry import (
    CutShort,
    RetryableStatus,
    Tries,
    reason,
    retry_after,
    retrying,
)


def tries(policy: RetryPolicy, events: list[PullEvent], jitter: float = 1.0) -> Tries:
    return Tries(policy, Emitter(events.append), threading.Event(), "w.bin", lambda: jitter)


def test_what_is_worth_another_try() -> None:
    request = httpx.Request("GET", "http://x")
    assert reason(httpx.ConnectError("refused", request=request)) == "cannot connect"
    assert reason(httpx.ReadTimeout("slow", request=request)) == "stalled"
    assert reason(httpx.ReadError("reset", request=request)) == "connection reset"
    assert reason(httpx.RemoteProtocolError("peer closed", request=request)) == (
        "connection closed early"
    )
    assert reason(CutShort("short")) == "connection closed early"
    assert reason(OSError(errno.ECONNRESET, "reset")) == "connection reset"
    assert reason(RetryableStatus(503)) == "HTTP 503"
    for final in (PullError("404"), ValueError("x"), OSError(errno.ENOSPC, "full"), Stopped()):
        assert reason(final) is None


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after({"retry-after": "7"}) == 7.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after({"retry-after": when}) or 0) <= 31
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_backoff_doubles_with_jitter_and_progress_resets_it() -> None:
    events: list[PullEvent] = []
    t = tries(RetryPolicy(base_delay=0.01, max_delay=0.04), events, jitter=1.0)
    for _ in range(4):
        assert t.again(RetryableStatus(502))
    assert [e.status for e in events] == [
        f"retrying in {d} s: HTTP 502" for d in ("0.01", "0.02", "0.04", "0.04")
    ]
    assert all(e.file == "w.bin" for e in events)
    low = tries(RetryPolicy(base_delay=0.04), [], jitter=0.0)
    assert low.again(RetryableStatus(502))
    assert low.waited == pytest.approx(0.02)  # equal jitter: never under half the step
    t.progressed()
    assert t.failures == 0


def test_gives_up_after_attempts_or_total_wait() -> None:
    t = tries(RetryPolicy(attempts=3, base_delay=0.001), [])
    calls = []

    def flaky() -> None:
        calls.append(1)
        raise RetryableStatus(503)

    with pytest.raises(PullError, match=r"w\.bin: gave up after 3 tries: HTTP 503"):
        retrying(flaky, t)
    assert len(calls) == 3
    patient = tries(RetryPolicy(max_wait=5), [])
    with pytest.raises(PullError, match="would pass the 5 s limit"):
        patient.again(RetryableStatus(429, retry_after=60))
    assert not tries(RetryPolicy(), []).again(ValueError("not transient"))

    def bad_url() -> None:
        raise httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'.")

    with pytest.raises(PullError, match=r"w\.bin: Request URL has an unsupported protocol"):
        retrying(bad_url, tries(RetryPolicy(), []))


def test_stopping_interrupts_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    t = Tries(RetryPolicy(base_delay=60), Emitter(None), stop, "w.bin")
    with pytest.raises(Stopped):
        t.again(RetryableStatus(503))


def test_store_keeps_fresh_partials_and_drops_week_old_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    fresh, old = store.partial("a:one"), store.partial("b:two")
    for d in (fresh, old):
        d.mkdir()
        (d / "x").write_bytes(b"123")
    stale = time.time() - PARTIAL_MAX_AGE - 60
    for p in (old, old / "x"):
        os.utime(p, (stale, stale))
    (store.staging_root / "0123abcd").mkdir()  # an ordinary staging leftover
    with store.model_lock("b:two"):  # a pull of it is under way: kept, however old
        Store(store.root)
        assert old.exists()
    Store(store.root)
    assert sorted(p.name for p in store.staging_root.iterdir()) == [fresh.name]

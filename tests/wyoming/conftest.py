"""A real `vox serve --wyoming tcp://127.0.0.1:PORT` on the e2e tests' pulled home."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import VoxServer, free_port
from tests.e2e.conftest import pulled, vox_server

__all__ = ["Served", "pulled", "serve_wyoming", "vox_server"]


@dataclass(frozen=True)
class Served:
    """One process serving HTTP (``http``) and Wyoming (``port``)."""

    http: VoxServer
    port: int


@contextlib.contextmanager
def serve_wyoming(pulled: VoxServer, log: Path, **env: str) -> Iterator[Served]:
    port = free_port()
    server = VoxServer(
        pulled.home,
        log,
        env={
            "VOX_PULL_DEFAULTS": "false",
            "VOX_WYOMING": f"tcp://127.0.0.1:{port}",
            **{f"VOX_{k.upper()}": v for k, v in env.items()},
        },
    )
    server.start()
    try:
        yield Served(server, port)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def wyoming(pulled: VoxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_wyoming(pulled, tmp_path_factory.mktemp("wyoming") / "server.log") as served:
        yield served

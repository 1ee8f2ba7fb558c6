"""A private index with basic auth through the real server: it pulls, retries, never leaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from vox_control.store.registry import CatalogEntry, FileSpec, PyPIPackage, PyPISource

from tests.conftest import VoxServer
from tests.faults import Fault, FaultProxy
from tests.store.helpers import FakeIndex, sha

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-t0ken-e2e"
VOICE = b"not really a voice, but bytes with a digest" * 1000


@pytest.fixture
def index() -> Iterator[FakeIndex]:
    idx = FakeIndex()
    idx.credentials = ("vox", SECRET)
    idx.html_only = True  # a PEP 503-only mirror, as many private ones are
    yield idx
    idx.close()


def events_of(server: VoxServer, name: str) -> list[dict[str, Any]]:
    with (
        server.client() as client,
        client.stream("POST", "/api/pull", json={"model": name}) as response,
    ):
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def test_private_html_index_with_basic_auth(index: FakeIndex, tmp_path: Path) -> None:
    index.add_wheel("private-voice", "1.0", {"private_voice/v.onnx": VOICE})
    proxy = FaultProxy(index.url.removesuffix("/simple"), lambda p: p.startswith("/files/"))
    entries = {
        "private:voice": PyPISource(
            packages=[PyPIPackage("private-voice", "1.0")],
            files=[FileSpec(path="v.onnx", parts=["private_voice/v.onnx"], sha256=sha(VOICE))],
        ),
        "private:missing": PyPISource(
            packages=[PyPIPackage("no-such-voice", "1.0")],
            files=[FileSpec(path="v.onnx", parts=["x/v.onnx"])],
        ),
    }
    catalog = tmp_path / "home" / "catalog"
    catalog.mkdir(parents=True)
    for name, source in entries.items():
        entry = CatalogEntry(name=name, type="tts", adapter="piper", source=source)
        (catalog / f"{name.replace(':', '__')}.json").write_bytes(msgspec.json.encode(entry))
    url = proxy.url.replace("://", f"://vox:{SECRET}@") + "/simple"
    env = {"VOX_PYPI_INDEX": url, "VOX_PULL_DEFAULTS": "0", "VOX_LOG_LEVEL": "debug"}
    server = VoxServer(tmp_path / "home", tmp_path / "server.log", env=env)
    server.start()
    try:
        proxy.add(Fault("busy", retry_after=1, match="/simple/private-voice/"))
        proxy.add(Fault("drop", after=200))  # the wheel is a few kB
        ok = events_of(server, "private:voice")
        assert ok[-1]["status"] == "success", ok[-3:]
        assert any(e["status"] == "retrying in 1 s: HTTP 503" for e in ok), ok
        assert any(e["status"].endswith(": connection closed early") for e in ok), ok
        failed = events_of(server, "private:missing")
        assert failed[-1]["status"] == "error", failed[-3:]
        with server.client() as client:
            shown = client.post("/api/show", json={"model": "private:voice"}).json()
    finally:
        server.stop()
        proxy.close()
    assert shown["installed"]
    assert (tmp_path / "home" / "models" / "private" / "voice" / "v.onnx").read_bytes() == VOICE
    assert index.authorized[-1] is not None  # credentials went to the index...
    everything = json.dumps([ok, failed, shown]) + server.log()
    assert "no-such-voice" in everything
    assert SECRET not in everything  # ...and nowhere else

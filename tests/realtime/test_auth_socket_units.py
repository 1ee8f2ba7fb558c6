"""Unit tests: token resolution, bind policy, the ASGI bearer check, socket path rules, busy."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from vox_control.auth import (
    AuthConfigError,
    BearerAuth,
    check_bind,
    resolve_token,
    token_matches,
)
from vox_control.errors import Overloaded
from vox_control.sessions.pipecat_wire import busy_from, error_event
from vox_control.settings import Settings
from vox_control.sockets import SocketPathError, bind_unix_socket, clear_stale_socket


def test_token_from_env_or_file(tmp_path: Path) -> None:
    assert resolve_token(Settings()) is None
    assert resolve_token(Settings(api_key=" abc ")) == "abc"
    key = tmp_path / "key"
    key.write_text("filetoken\n")
    assert resolve_token(Settings(api_key_file=str(key))) == "filetoken"
    with pytest.raises(AuthConfigError, match="either"):
        resolve_token(Settings(api_key="a", api_key_file=str(key)))
    key.write_text("\n")
    with pytest.raises(AuthConfigError, match="empty"):
        resolve_token(Settings(api_key_file=str(key)))
    with pytest.raises(AuthConfigError, match="cannot read"):
        resolve_token(Settings(api_key_file=str(tmp_path / "missing")))


def test_settings_repr_hides_the_key() -> None:
    assert "hunter2" not in repr(Settings(api_key="hunter2"))
    assert Settings.from_env({"VOX_API_KEY": "k"}).api_key == "k"


@pytest.mark.parametrize(
    ("host", "token", "insecure", "ok"),
    [
        ("127.0.0.1", None, False, True),
        ("::1", None, False, True),
        ("localhost", None, False, True),
        ("0.0.0.0", None, False, False),
        ("192.168.1.5", None, False, False),
        ("0.0.0.0", "t", False, True),
        ("0.0.0.0", None, True, True),
    ],
)
def test_bind_policy(host: str, token: str | None, insecure: bool, ok: bool) -> None:
    settings = Settings(host=host, insecure=insecure)
    if ok:
        check_bind(settings, token)
    else:
        with pytest.raises(AuthConfigError, match="--insecure"):
            check_bind(settings, token)


def test_token_matching() -> None:
    assert token_matches([(b"authorization", b"Bearer abc")], "abc")
    assert token_matches([(b"Authorization", b"bearer abc")], "abc")
    assert not token_matches([(b"authorization", b"Bearer abd")], "abc")
    assert not token_matches([(b"authorization", b"Basic abc")], "abc")
    assert not token_matches([], "abc")


async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_bearer_middleware_http() -> None:
    app = BearerAuth(_ok_app, "abc")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/api/health")).status_code == 200
        denied = await client.get("/api/list")
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_api_key"
        auth = {"Authorization": "Bearer abc"}
        assert (await client.get("/api/list", headers=auth)).status_code == 200


async def test_bearer_middleware_websocket_denial_response() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    scope = {
        "type": "websocket",
        "path": "/v1/realtime/tts",
        "headers": [],
        "extensions": {"websocket.http.response": {}},
    }
    await BearerAuth(_ok_app, "abc")(scope, receive, send)
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    sent.clear()
    await BearerAuth(_ok_app, "abc")({**scope, "extensions": {}}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_socket_rules(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    clear_stale_socket(path)  # nothing there: nothing to do
    live = bind_unix_socket(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    live.listen(1)
    with pytest.raises(SocketPathError, match="already listening"):
        clear_stale_socket(path)
    live.close()  # closed without unlink: what a crash leaves
    assert path.exists()
    clear_stale_socket(path)
    assert not path.exists()
    regular = tmp_path / "f"
    regular.write_text("x")
    with pytest.raises(SocketPathError, match="not a socket"):
        clear_stale_socket(regular)
    assert regular.read_text() == "x"
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "gone")
    clear_stale_socket(dangling)
    assert not dangling.is_symlink()
    s = bind_unix_socket(tmp_path / "again.sock")
    assert s.family == socket.AF_UNIX
    s.close()


def test_busy_maps_retry_after_seconds_to_ms() -> None:
    exc = Overloaded("full", code="queue_full", headers={"Retry-After": "3"})
    busy = busy_from(exc)
    assert busy.code == "busy"
    assert busy.retry_after_ms == 3000
    event = error_event("busy", "full", client_event_id="e", retry_after_ms=3000)
    assert event["retry_after_ms"] == event["error"]["retry_after_ms"] == 3000
    assert event["error"]["type"] == "rate_limit_error"
    assert event["previous_event_id"] == event["error"]["event_id"] == "e"

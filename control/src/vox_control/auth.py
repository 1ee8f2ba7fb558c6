"""Optional bearer-token auth for every HTTP and WebSocket route, checked before any handshake."""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from vox_control.errors import error_body
from vox_control.settings import Settings, split_host
from vox_control.web import PAGE_PATHS

if TYPE_CHECKING:
    from litestar.types import Scope as LitestarScope

log = logging.getLogger("vox.auth")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Left open with a token set: liveness and readiness probes (container healthchecks,
# supervisors) carry no secret, and the answers hold no model data beyond counts, in-progress
# pull names and the --preload names.
OPEN_PATHS = frozenset({"/api/health", "/api/ready"})

# A browser cannot set headers on a WebSocket, only offer subprotocols: the playground offers
# ["vox", "vox.bearer.<base64url of the token>"], the token is checked like a header's, and
# the server selects "vox" (never echoing the token back).
WS_PROTOCOL = "vox"
WS_TOKEN_PREFIX = "vox.bearer."


class AuthConfigError(Exception):
    """The token configuration is unusable; `vox serve` refuses to start with this message."""


def resolve_token(settings: Settings) -> str | None:
    """The server's token: VOX_API_KEY, or the first line of --api-key-file; None: open."""
    if settings.api_key and settings.api_key_file:
        raise AuthConfigError("set either VOX_API_KEY or --api-key-file (VOX_API_KEY_FILE)")
    if settings.api_key:
        token = settings.api_key.strip()
        if not token:
            raise AuthConfigError("VOX_API_KEY is set but blank")
        return token
    if not settings.api_key_file:
        return None
    path = Path(settings.api_key_file).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise AuthConfigError(f"cannot read the API key file {path}: {exc.strerror}") from None
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise AuthConfigError(f"the API key file {path} is empty")
    if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("the API key file %s is readable by other users; chmod 600 it", path)
    return lines[0].strip()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a DNS name may resolve anywhere


def check_bind(settings: Settings, token: str | None) -> None:
    """Refuse a token-less server on a non-loopback address unless --insecure says so; the
    open metrics listener (--metrics-addr) never has a token, so it needs --insecure there."""
    if settings.metrics_addr:
        try:
            _, host, port = split_host(settings.metrics_addr)
        except ValueError as exc:
            raise AuthConfigError(f"--metrics-addr / VOX_METRICS_ADDR: {exc}") from None
        if port is None:
            raise AuthConfigError("--metrics-addr / VOX_METRICS_ADDR needs a port (:9464)")
        if not settings.insecure and not is_loopback(host):
            raise AuthConfigError(
                f"refusing to serve metrics on {host} without a token: bind the metrics "
                "listener to 127.0.0.1, scrape the main port with the token, or pass --insecure"
            )
    if token or settings.insecure or is_loopback(settings.host):
        return
    raise AuthConfigError(
        f"refusing to serve on {settings.host} without an API key: anyone who can reach it "
        "could use it. Set VOX_API_KEY or --api-key-file, bind 127.0.0.1, or pass --insecure"
    )


def token_matches(headers: list[tuple[bytes, bytes]], token: str) -> bool:
    """True when an Authorization header is ``Bearer <token>`` (compared in constant time)."""
    expected = token.encode()
    for key, value in headers:
        if key.lower() != b"authorization":
            continue
        scheme, _, given = value.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), expected):
            return True
    return False


def offered_protocols(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The subprotocols a WebSocket handshake offers (Sec-WebSocket-Protocol, comma-separated)."""
    return [
        item.strip()
        for key, value in headers
        if key.lower() == b"sec-websocket-protocol"
        for item in value.split(b",")
    ]


def protocol_token_matches(headers: list[tuple[bytes, bytes]], token: str) -> bool:
    """True when a subprotocol is ``vox.bearer.<base64url(token), unpadded>`` (constant time)."""
    encoded = base64.urlsafe_b64encode(token.encode()).rstrip(b"=")
    expected = WS_TOKEN_PREFIX.encode() + encoded
    return any(hmac.compare_digest(item, expected) for item in offered_protocols(headers))


def is_page(scope: Scope) -> bool:
    """A GET of the playground page or one of its files: exact paths, never an API or a socket."""
    return (
        scope["type"] == "http" and scope.get("method") == "GET" and scope.get("path") in PAGE_PATHS
    )


class SelectVoxProtocol:
    """ASGI middleware: a handshake that offered ``vox`` is accepted with it selected.

    A browser fails a WebSocket whose accept selects none of the protocols it offered, so this
    runs with and without a token (the page may send one to a server that wants none).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or WS_PROTOCOL.encode() not in offered_protocols(
            scope.get("headers") or []
        ):
            await self.app(scope, receive, send)
            return

        async def selecting(message: Message) -> None:
            if message["type"] == "websocket.accept" and not message.get("subprotocol"):
                message = {**message, "subprotocol": WS_PROTOCOL}
            await send(message)

        await self.app(scope, receive, selecting)


class BearerAuth:
    """ASGI middleware: a missing or wrong token gets 401 (OpenAI's error envelope)."""

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str] = OPEN_PATHS):
        if not token:
            raise ValueError("BearerAuth needs a token")
        self.app = app
        self.token = token
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (
            kind not in ("http", "websocket")
            or scope.get("path") in self.open_paths
            or is_page(scope)
            or is_preflight(scope)
            or token_matches(scope.get("headers") or [], self.token)
            or (
                kind == "websocket"
                and protocol_token_matches(scope.get("headers") or [], self.token)
            )
        ):
            await self.app(scope, receive, send)
            return
        await deny(
            scope,
            send,
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            "authentication_error",
            code="invalid_api_key",
            headers=[(b"www-authenticate", b'Bearer realm="vox"')],
        )


def is_preflight(scope: Scope) -> bool:
    """A CORS preflight: the browser asks before the real request and sends no credentials.
    Litestar's CORS layer answers it without running any route, so it needs no token."""
    if scope["type"] != "http" or scope.get("method") != "OPTIONS":
        return False
    names = {key for key, _ in scope.get("headers") or []}
    return b"origin" in names and b"access-control-request-method" in names


async def deny(
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    type_: str,
    *,
    code: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Refuse an HTTP request or a WebSocket handshake with the API's error body and its id."""
    # Imported here: renderers.py loads Litestar, which `vox serve` imports beside the runners'
    # start rather than before it.
    from vox_control.renderers import REQUEST_ID_HEADER, scope_request_id

    scope.setdefault("state", {})
    # The same id the routes would have given it (renderers.py takes Litestar's scope type).
    rid = scope_request_id(cast("LitestarScope", scope))
    body = json.dumps(error_body(message, type_, code=code, request_id=rid)).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER.lower().encode(), rid.encode()),
        *(headers or []),
    ]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in (scope.get("extensions") or {}):
        # The denial response: a plain HTTP answer instead of the 101 upgrade.
        await send({"type": "websocket.http.response.start", "status": status, "headers": head})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})  # the server answers 403


def protect(app: Any, token: str | None) -> Any:
    """``app`` (any ASGI app) behind BearerAuth when a token is configured; either way a
    WebSocket that offers the ``vox`` subprotocol gets it selected."""
    selecting = SelectVoxProtocol(app)
    return BearerAuth(selecting, token) if token else selecting


__all__ = [
    "AuthConfigError",
    "BearerAuth",
    "check_bind",
    "deny",
    "is_preflight",
    "protect",
    "resolve_token",
]

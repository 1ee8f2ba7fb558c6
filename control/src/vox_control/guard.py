"""Browser safety: the Origin and Host checks every HTTP and WebSocket request passes first.

A key-less server on loopback trusts whoever can reach it, and a web page the user visits can
reach it: a cross-site ``fetch`` or ``<form>`` post needs no CORS permission to *send* (only to
read the answer), and DNS rebinding points the page's own name at 127.0.0.1. Two checks close
both, as Ollama does, without touching clients that are not browsers:

- **Origin.** Browsers add ``Origin`` to every non-GET request and every WebSocket handshake; curl,
  SDKs and the CLI send none. A request that carries one outside the allowed origins (loopback
  origins on any port, ``--cors-origins``, or the server's own origin) is refused with 403 when it
  could change or spend anything: every method but GET/HEAD/OPTIONS, and every WebSocket. Content
  types stay as liberal as before, so ``curl -d '{...}'`` (form content type) keeps working.
- **Host.** A rebinding page reaches the server under the attacker's DNS name, so its requests
  carry that name in ``Host``. Answered are: loopback names, IP literals (no DNS, so nothing to
  rebind), names without a dot (container service names, short host names: a name an attacker
  can point anywhere is a public one, and those have dots), this machine's name, the bind host
  and ``--allowed-hosts``; ``*`` turns the check off. Unlike Ollama it stays on when bound off
  loopback: a container binds 0.0.0.0 behind a port published on the host's loopback, where a
  rebinding page reaches it just the same. On the Unix socket there is no Host to trust or to
  check (a browser cannot open one): skipped.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vox_control.auth import ASGIApp, Receive, Scope, Send, deny
from vox_control.settings import Settings

if TYPE_CHECKING:
    from litestar.config.cors import CORSConfig

log = logging.getLogger("vox.guard")

# Reads that change nothing: a foreign page may send them, but without CORS it cannot read
# the answer. WebSocket handshakes are GETs too, and are always checked.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Loopback origins on any port, as Ollama allows by default. 0.0.0.0 reaches the local host in
# browsers that still allow it, so a page served from it is local too.
LOOPBACK_ORIGINS = r"https?://(?:localhost|127\.0\.0\.1|\[::1\]|0\.0\.0\.0)(?::[0-9]{1,5})?"


def cors_config(settings: Settings) -> CORSConfig:
    """Litestar's CORS for loopback origins plus ``--cors-origins``; the Origin check uses it too.

    Entries are full origins (``https://app.example.com``); ``*`` inside one is a wildcard, and
    a lone ``*`` allows every origin (the Origin check is then off as well).
    """
    from litestar.config.cors import CORSConfig  # loaded with the app, after the runners start

    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_origin_regex=LOOPBACK_ORIGINS,
        allow_methods=["*"],
        allow_headers=["*"],
        # Beyond the CORS-safelisted ones, what a page needs to read: when to retry after
        # 429/503, and the id to quote in a bug report.
        expose_headers=["Retry-After", "X-Request-Id"],
    )


def host_name(header: str) -> str:
    """The name in a Host header: no port, no brackets, no trailing dot, lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    name, colon, port = value.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        value = name
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Which Host names this server answers to (DNS rebinding: see the module docstring)."""

    def __init__(self, bind_host: str, allowed: tuple[str, ...], machine: str | None = None):
        self.any = "*" in allowed
        machine = (machine if machine is not None else socket.gethostname()).lower()
        names = {"localhost", host_name(bind_host)}
        if machine:
            names |= {machine, f"{machine}.local"}
        # `.example.com` or `*.example.com`: the domain and every name under it.
        suffixes = {".localhost"}
        for entry in allowed:
            entry = entry.strip().lower()
            if entry.startswith("*."):
                entry = entry[1:]
            if entry.startswith("."):
                suffixes.add(entry)
                names.add(entry[1:])
            elif entry:
                names.add(host_name(entry))
        self.names = frozenset(names - {""})
        self.suffixes = tuple(sorted(suffixes))

    def allows(self, header: str | None) -> bool:
        if self.any or not header:
            return True  # only HTTP/1.0 omits Host, and browsers never do
        name = host_name(header)
        return _is_ip(name) or "." not in name or name in self.names or name.endswith(self.suffixes)


def origin_netloc(origin: str) -> str | None:
    """``host:port`` of an origin with its scheme's default port filled in; None if malformed."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{name}:{port}"


def _same_origin(origin: str, host: str | None) -> bool:
    # The page came from this very server (its /docs, or a LAN address). The port of a Host
    # without one is the scheme's default, which origin_netloc fills in on both sides.
    if not host:
        return False
    mine = origin_netloc(origin)
    if mine is None:
        return False
    scheme = origin.split(":", 1)[0]
    return mine == origin_netloc(f"{scheme}://{host.strip().lower()}")


class Guard:
    """ASGI middleware: refuse foreign Hosts, and foreign Origins where they could do harm."""

    def __init__(self, app: ASGIApp, settings: Settings, machine: str | None = None) -> None:
        self.app = app
        self.hosts = HostCheck(settings.host, settings.allowed_hosts, machine)
        self.cors = cors_config(settings)

    def origin_allowed(self, origin: str, host: str | None, host_checked: bool) -> bool:
        if self.cors.is_origin_allowed(origin):
            return True
        # Same-origin is only trustworthy once the Host was checked: under DNS rebinding the
        # attacker's origin and Host name agree too.
        return host_checked and _same_origin(origin, host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host: str | None = None
        origins: list[str] = []
        for key, value in scope.get("headers") or []:
            if key == b"host":
                host = value.decode("latin-1")
            elif key == b"origin":
                origins.append(value.decode("latin-1"))
        server = scope.get("server")
        unix = server is None or server[1] is None
        host_checked = not unix and not self.hosts.any
        if not unix and not self.hosts.allows(host):
            log.warning("refused Host %r (%s %s)", host, _method(scope), scope.get("path"))
            await deny(
                scope,
                send,
                403,
                f"Host {host!r} is not a name this server answers to (a defence against DNS "
                "rebinding); add it to --allowed-hosts (VOX_ALLOWED_HOSTS)",
                "permission_error",
                code="host_not_allowed",
            )
            return
        checked = kind == "websocket" or scope.get("method") not in SAFE_METHODS
        foreign = [o for o in origins if not self.origin_allowed(o, host, host_checked)]
        if checked and foreign:
            log.warning("refused Origin %r (%s %s)", foreign[0], _method(scope), scope.get("path"))
            await deny(
                scope,
                send,
                403,
                f"requests from the web page at {foreign[0]!r} are refused (cross-site request "
                "protection); allow that origin with --cors-origins (VOX_CORS_ORIGINS)",
                "permission_error",
                code="origin_not_allowed",
            )
            return
        await self.app(scope, receive, send)


def _method(scope: Scope) -> str:
    return "WS" if scope["type"] == "websocket" else str(scope.get("method"))


def guard(app: Any, settings: Settings) -> Any:
    """``app`` (any ASGI app) behind the Origin and Host checks."""
    return Guard(app, settings)


__all__ = ["Guard", "HostCheck", "cors_config", "guard", "host_name", "origin_netloc"]

"""The Wyoming listener: TCP or a Unix socket, its sessions, the optional zeroconf announcement.

Started in the app's lifespan when ``--wyoming`` / ``VOX_WYOMING`` is set, so it shares the HTTP
server's scheduler, store and memory budget; each connection is a sessions.wyoming session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any

from vox_control.auth import is_loopback
from vox_control.services import Services
from vox_control.sessions.wyoming import WyomingSession
from vox_control.sessions.wyoming_info import VoiceCatalog
from vox_control.sockets import bind_unix_socket

log = logging.getLogger("vox.wyoming")


def parse_uri(uri: str, *, insecure: bool) -> tuple[str, str, int]:
    """``tcp://host:port`` or ``unix:///path`` -> (scheme, host or path, port).

    Wyoming has no authentication: off loopback it needs ``--insecure``, as HTTP does
    without an API key.
    """
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "unix" and parsed.path:
        return "unix", parsed.path, 0
    if parsed.scheme != "tcp" or not parsed.hostname or parsed.port is None:
        raise ValueError(f"VOX_WYOMING / --wyoming: {uri!r} is not tcp://HOST:PORT or unix:///PATH")
    if not (insecure or is_loopback(parsed.hostname)):
        raise ValueError(
            f"--wyoming {uri}: Wyoming has no authentication; binding it off loopback needs "
            "--insecure (anyone who can reach the port can use every model)"
        )
    return "tcp", parsed.hostname, parsed.port


class WyomingServer:
    """The listening socket, its sessions, and the optional zeroconf announcement."""

    def __init__(self, services: Services, uri: str, *, zeroconf: bool = False) -> None:
        self.services = services
        self.uri = uri
        self.scheme, self.where, self.port = parse_uri(uri, insecure=services.settings.insecure)
        self.zeroconf = zeroconf
        self.catalog = VoiceCatalog(services)
        self.sessions: dict[str, WyomingSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self.socket_path = Path(os.path.abspath(os.path.expanduser(self.where)))

    async def start(self) -> None:
        if self.scheme == "unix":
            # The HTTP socket's binder: mode 0600 from birth, a stale socket replaced.
            sock = await asyncio.to_thread(bind_unix_socket, self.socket_path)
            self._server = await asyncio.start_unix_server(self._accept, sock=sock)
        else:
            self._server = await asyncio.start_server(
                self._accept, self.where, self.port, limit=64 * 1024
            )
            if self.port == 0:
                self.port = self._server.sockets[0].getsockname()[1]
        log.info("wyoming serving on %s", self.uri)
        if self.zeroconf and self.scheme == "tcp":
            await self._announce()

    async def _announce(self) -> None:
        try:
            from wyoming.zeroconf import HomeAssistantZeroconf
        except ImportError:
            log.error("--wyoming-zeroconf needs the zeroconf package (pip install zeroconf)")
            return
        host = None if self.where in ("0.0.0.0", "::") else self.where
        await HomeAssistantZeroconf(port=self.port, host=host).register_server()
        log.info("wyoming announced as _wyoming._tcp on port %d", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = WyomingSession(self.services, self.catalog, reader, writer)
        self.sessions[session.id] = session
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await session.run()
        finally:
            self.sessions.pop(session.id, None)
            if task is not None:
                self._tasks.discard(task)

    def status(self) -> dict[str, Any]:
        return {"listening": self.uri, "sessions": [s.status() for s in self.sessions.values()]}

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.scheme == "unix":
            self.socket_path.unlink(missing_ok=True)

"""The HTTP server around the app: uvicorn with Vox's connection guard and settings.

`vox serve` imports this on its app-building thread, after the preloaded runners have spawned:
uvicorn, h11, click and the rest of the HTTP stack then load beside the runners' start instead
of before it (vox_control.serve binds the sockets and starts the runners without them).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import uvicorn

from vox_control.limits import GuardedH11Protocol, bound_repeats, fit_concurrency, raise_nofile
from vox_control.settings import Settings
from vox_control.sockets import remove_own_socket


class _SocketServer(uvicorn.Server):
    """Removes its Unix socket at shutdown: uvicorn re-raises SIGTERM once serve() returns,
    so code after run() never executes on a signal stop."""

    def __init__(self, config: uvicorn.Config, path: Path, inode: int) -> None:
        super().__init__(config)
        self._path = path
        self._inode = inode

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets=sockets)
        finally:
            remove_own_socket(self._path, self._inode)


def connection_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn's connection settings, after raising the descriptor limit they must fit in."""
    return {
        "http": GuardedH11Protocol.configured(settings.timeout_header, settings.timeout_body),
        "limit_concurrency": fit_concurrency(settings.limit_concurrency, raise_nofile()),
        "timeout_keep_alive": settings.timeout_keep_alive,
        "ws_ping_interval": settings.ws_ping_interval or None,
        "ws_ping_timeout": settings.ws_ping_timeout or None,
    }


def make_server(settings: Settings, app: Any, unix: tuple[Path, int] | None) -> uvicorn.Server:
    """The server for ``app``; `serve(sockets=...)` then runs it on the bound sockets."""
    bound_repeats()  # a flood of one warning (accept() failures, refusals) stays a few lines
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Streaming responses must not be held back; runners are reaped in the lifespan.
        # SIGTERM drains in-flight requests this long, then the lifespan reaps the runners.
        timeout_graceful_shutdown=max(1, round(settings.drain_timeout)),
        log_config=None,
        # Audio barely compresses: permessage-deflate cost ~20 ms of zlib per sentence of
        # pcm16 before the first frame left (bench/streaming.py), for a few percent of bytes.
        ws_per_message_deflate=False,
        # The asyncio loop whatever else is installed: uvicorn would pick uvloop when it can
        # import it (Ray's uvicorn[standard] brings it into the dev environment), and the
        # connection guard (limits.py), the accept-error log bound and runner reaping are
        # built and tested on asyncio's transports and child watcher.
        loop="asyncio",
        **connection_limits(settings),
    )
    return uvicorn.Server(config) if unix is None else _SocketServer(config, *unix)

"""Run the control plane under uvicorn with one Settings object: TCP, and a Unix socket if asked."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vox_control.auth import AuthConfigError, check_bind, protect, resolve_token
from vox_control.guard import guard
from vox_control.logs import configure_logging
from vox_control.services import Services
from vox_control.settings import Settings
from vox_control.sockets import SocketPathError, bind_tcp, bind_unix_socket, remove_own_socket

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("vox")


def _announce(settings: Settings, token: str | None) -> None:
    log.info(
        "vox serving on http://%s:%d%s (home %s, device %s, auth %s)",
        settings.host,
        settings.port,
        f" and unix:{settings.socket}" if settings.socket else "",
        settings.home,
        settings.resolved_device,
        "bearer token" if token else "off",
    )


def serve(settings: Settings) -> None:
    # The control plane's numpy does no matrix products worth a thread: without this, its
    # OpenBLAS started a spinning thread per core as it loaded (~0.13 s of CPU, right as the
    # first runners load). Runners set the same default for themselves (vox_runner.__main__).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        configure_logging(settings.log_level, settings.log_format)
    except ValueError as exc:
        raise SystemExit(f"vox serve: VOX_LOG_FORMAT / --log-format: {exc}") from None
    try:
        token = resolve_token(settings)
        check_bind(settings, token)
        if settings.wyoming:  # no auth there: off loopback only with --insecure
            from vox_control.sessions.wyoming_server import parse_uri  # only --wyoming needs it

            parse_uri(settings.wyoming, insecure=settings.insecure)
    except (AuthConfigError, ValueError) as exc:
        raise SystemExit(f"vox serve: {exc}") from None
    services = Services(settings)
    # Bound before anything claims to serve: a busy port is one clear line, not a
    # "serving on ..." followed by uvicorn's traceback-less exit.
    sockets = [bind_tcp(settings)]
    unix: tuple[Path, int] | None = None
    if settings.socket:
        path = Path(settings.socket).expanduser().absolute()
        try:
            sockets.append(bind_unix_socket(path))
        except SocketPathError as exc:
            sockets[0].close()
            raise SystemExit(f"vox serve: {exc}") from None
        unix = (path, path.stat().st_ino)
    _announce(settings, token)
    try:
        # One server, one app, one lifespan: TCP and the Unix socket serve the same routes.
        started = asyncio.run(_run(settings, services, token, sockets, unix))
    finally:
        if unix is not None:
            remove_own_socket(*unix)
    if not started:
        sys.exit(3)  # uvicorn.run's exit code for a failed start


async def _run(
    settings: Settings,
    services: Services,
    token: str | None,
    sockets: list[socket.socket],
    unix: tuple[Path, int] | None,
) -> bool:
    """Start the preloads, build the app and the HTTP server beside them, serve; True once
    it had started.

    The preloaded runners start first: their interpreters, imports and model loads run on
    other cores while this process builds the app (a few hundred ms of route and schema
    setup), so a first request finds its model loaded sooner.
    """
    await services.start()
    try:
        server = await asyncio.to_thread(_build_server, settings, services, token, unix)
    except BaseException:
        await services.stop()
        raise
    await server.serve(sockets=sockets)
    return server.started


def _build_server(
    settings: Settings, services: Services, token: str | None, unix: tuple[Path, int] | None
) -> uvicorn.Server:
    # Litestar, uvicorn and h11 load here, on a thread beside the preloaded runners' start,
    # not before it: the first runner no longer waits for uvicorn's imports (~60 ms).
    from vox_control.app import create_app
    from vox_control.http_server import make_server

    # Outermost first: the Origin/Host checks, then the token, then the routes.
    app = guard(protect(create_app(settings, services), token), settings)
    return make_server(settings, app, unix)

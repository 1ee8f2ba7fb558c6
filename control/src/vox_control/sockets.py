"""The listening sockets of `vox serve`: TCP, and a Unix socket (mode 0600, a stale one cleared).

Apart from serve.py, so that their other users import no server start-up: the HTTP server
removes its Unix socket at shutdown (http_server.py), and the Wyoming server binds its own.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from pathlib import Path

from vox_control.settings import Settings

log = logging.getLogger("vox")


class SocketPathError(Exception):
    """The --socket path cannot be used: a non-socket file, or a live server, is there."""


def clear_stale_socket(path: Path) -> None:
    """Make ``path`` bindable: remove a socket left by a crash, refuse anything else there."""
    if path.is_symlink() and not path.exists():
        path.unlink()  # a dangling link: bind() would fail on it
        return
    if not path.exists():
        return
    if not stat.S_ISSOCK(path.stat().st_mode):
        raise SocketPathError(
            f"{path} exists and is not a socket; remove it or choose another --socket path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # nobody listens: a leftover of a crash
        log.warning("removed a stale socket at %s", path)
        return
    except OSError as exc:
        raise SocketPathError(f"cannot probe the existing socket {path}: {exc}") from exc
    finally:
        probe.close()
    raise SocketPathError(f"a server is already listening on {path}; stop it or choose another")


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening-ready Unix socket at ``path`` with mode 0600 from birth (umask held)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise SocketPathError(f"cannot bind {path}: {exc.strerror}") from exc
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    return sock


def remove_own_socket(path: Path, inode: int) -> None:
    # Only our own inode: a later server may have taken the path over meanwhile.
    with contextlib.suppress(OSError):
        if path.stat().st_ino == inode:
            path.unlink()


def bind_tcp(settings: Settings) -> socket.socket:
    """The listening TCP socket, or exit with what is in the way."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP,
    # and with proto 0 every response on a kept-alive connection waited ~40 ms for the
    # client's delayed ACK (Nagle), 44 ms per request instead of 2-3.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        where = f"{settings.host}:{settings.port}"
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"vox serve: {where} is already in use (another vox serve? `vox status "
                f"--host {where}` tells); stop it or choose another --port"
            ) from None
        raise SystemExit(f"vox serve: cannot bind {where}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock

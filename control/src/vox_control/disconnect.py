"""Cancel a request's handler when its client disconnects.

Neither uvicorn nor Litestar does this for a handler that answers in one piece: a client that
gave up on a ten-minute transcription left it running (and the runner busy) to the end. This
ASGI middleware reads the request as the app asks for it; once the whole body is in, it keeps
one receive() pending, on which the server reports ``http.disconnect``, and cancels the handler
then. The cancellation travels down as usual: the scheduler releases the model and the runner
client sends Cancel, so the runner stops at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

log = logging.getLogger("vox.http")


class CancelOnDisconnect:
    """Wraps an ASGI app; requests to ``paths`` are cancelled when their client goes away."""

    def __init__(self, app: ASGIApp, paths: Collection[str]) -> None:
        self._app = app
        self._paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"].rstrip("/") not in self._paths:
            await self._app(scope, receive, send)
            return
        await _Watched(receive, send).run(self._app, scope)


def cancel_on_disconnect(paths: Collection[str]) -> Callable[[ASGIApp], ASGIApp]:
    """Litestar middleware factory: ``middleware=[cancel_on_disconnect(paths)]``."""

    def factory(app: ASGIApp) -> ASGIApp:
        return CancelOnDisconnect(app, paths)

    return factory


class _Watched:
    """One request: the app's receive/send, plus the watch for its client's disconnect."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._gone = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._handler: asyncio.Task[None] | None = None
        self._responded = False

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        handler = asyncio.create_task(self._serve(app, scope))
        self._handler = handler
        try:
            await handler
        except asyncio.CancelledError:
            task = asyncio.current_task()
            ours = task is not None and task.cancelling() == 0
            if ours and handler.cancelled() and self._gone.is_set():
                log.info("%s %s: client disconnected, request cancelled", *_what(scope))
                return
            handler.cancel()  # the server itself is cancelling us: take the handler along
            raise
        finally:
            if self._watcher is not None:
                self._watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watcher

    async def _serve(self, app: ASGIApp, scope: Scope) -> None:
        await app(scope, self.receive, self.send)

    async def receive(self) -> ReceiveMessage:
        if self._watcher is not None:
            # The body is in: all the server can say now is "disconnected", to the watcher.
            await self._gone.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._gone.set()
        elif not message.get("more_body", False):
            self._watcher = asyncio.create_task(self._watch())
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._responded = True
        await self._send(message)

    async def _watch(self) -> None:
        message = await self._receive()
        # uvicorn also answers "disconnect" once the response is complete: not a give-up.
        if message["type"] == "http.disconnect":
            self._gone.set()
            if not self._responded and self._handler is not None:
                self._handler.cancel()


def _what(scope: Scope) -> tuple[str, str]:
    return str(scope.get("method", "")), str(scope.get("path", ""))

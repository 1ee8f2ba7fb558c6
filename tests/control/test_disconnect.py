"""The ASGI helper that cancels a handler when its client disconnects (fake server events)."""

from __future__ import annotations

import asyncio
from typing import Any

from vox_control.disconnect import CancelOnDisconnect


class _Server:
    """uvicorn's side: the body in one message, then nothing until a disconnect (or the end)."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events.put_nowait({"type": "http.request", "body": b"audio", "more_body": False})
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.events.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.events.put_nowait({"type": "http.disconnect"})  # as uvicorn does then


def _scope(path: str) -> dict[str, Any]:
    return {"type": "http", "path": path, "method": "POST"}


class _App:
    def __init__(self, work: float) -> None:
        self.work = work
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["body"] == b"audio"
        self.started.set()
        try:
            await asyncio.sleep(self.work)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _wrap(app: _App, paths: list[str]) -> Any:
    """The middleware around a fake app; Any, as the fakes are not Litestar's typed dicts."""
    asgi: Any = app
    return CancelOnDisconnect(asgi, paths)


async def test_a_disconnect_cancels_the_handler_at_once() -> None:
    app, server = _App(work=30.0), _Server()
    wrapped = _wrap(app, ["/api/transcribe"])
    call = asyncio.create_task(wrapped(_scope("/api/transcribe"), server.receive, server.send))
    await app.started.wait()
    server.events.put_nowait({"type": "http.disconnect"})
    await asyncio.wait_for(call, 1.0)  # returns quietly: nobody is left to answer
    assert app.cancelled.is_set()
    assert server.sent == []


async def test_a_finished_request_is_answered_and_not_cancelled() -> None:
    app, server = _App(work=0.01), _Server()
    wrapped = _wrap(app, ["/api/transcribe/"])
    await wrapped(_scope("/api/transcribe/"), server.receive, server.send)
    assert not app.cancelled.is_set()
    assert [m["type"] for m in server.sent] == ["http.response.start", "http.response.body"]


async def test_other_paths_are_left_alone() -> None:
    app, server = _App(work=0.2), _Server()
    wrapped = _wrap(app, ["/api/transcribe"])
    call = asyncio.create_task(wrapped(_scope("/api/pull"), server.receive, server.send))
    await app.started.wait()
    server.events.put_nowait({"type": "http.disconnect"})
    await asyncio.wait_for(call, 2.0)
    assert not app.cancelled.is_set()
    assert len(server.sent) == 2


async def test_the_server_cancelling_the_request_cancels_the_handler_too() -> None:
    app, server = _App(work=30.0), _Server()
    wrapped = _wrap(app, ["/api/transcribe"])
    call = asyncio.create_task(wrapped(_scope("/api/transcribe"), server.receive, server.send))
    await app.started.wait()
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    assert call.cancelled()
    await asyncio.wait_for(app.cancelled.wait(), 1.0)

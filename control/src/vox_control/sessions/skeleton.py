"""What every streaming session shares, so each protocol handler holds only its own events.

Two skeletons, one per wire family:

- ``StreamSession`` (Vox's own WebSocket streams, sessions/ws_*): a ``config`` message opens
  the session and loads the model; a StreamError ends it with an error event and a close code.
- ``RealtimeSession`` (the pipecat local-server protocols, sessions/pipecat_*): the model is
  loaded before ``server.hello``; client events are dispatched by type, a ProtocolError is
  answered with an ``error`` event and the session goes on; ``server.status``,
  ``session.close`` and ``session.cancel`` are handled here.

Both reach models only through vox_control.inference (resolve once, then transcribe or speak).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from vox_protocol import ModelInfo

from vox_control.inference import Kind, ResolvedModel, resolve
from vox_control.services import Services
from vox_control.sessions.channel import Channel, ClientGone, StreamError, convert, model_error
from vox_control.sessions.pipecat_wire import (
    ProtocolError,
    SessionRefused,
    Transport,
    client_event_id,
    error_event,
    event_id,
    loaded_model,
    model_load,
    new_id,
    parse,
    refusal,
    vox_status,
)

log = logging.getLogger("vox.sessions")

C = TypeVar("C")


class StreamSession:
    """One Vox WebSocket stream: ``run`` serves it and renders how it ended."""

    kind: ClassVar[Kind]

    def __init__(self, channel: Channel, services: Services) -> None:
        self.channel = channel
        self.services = services
        self.settings = services.settings

    async def run(self) -> None:
        try:
            await self.serve()
        except StreamError as exc:
            await self.channel.fail(exc)
        except ClientGone as exc:
            log.info("%s stream: client gone (%s); session cancelled", self.kind, exc)

    async def serve(self) -> None:
        raise NotImplementedError

    async def receive_config(self, kind: type[C]) -> C:
        """The session's first message, a ``config``, validated into ``kind``."""
        return convert(await self.channel.receive_config(), kind)

    async def open_model(
        self,
        requested: str | None,
        before_load: Callable[[ResolvedModel], object] | None = None,
    ) -> tuple[ResolvedModel, ModelInfo]:
        """Resolve the configured model and load it now, so a model that cannot load fails
        the session before ``ready``; ``before_load`` refuses what the catalog already can."""
        try:
            model = resolve(self.services, requested, self.kind)
            if before_load is not None:
                before_load(model)
            async with self.services.scheduler.use(model.name) as loaded:
                return model, loaded.info
        except Exception as exc:
            raise model_error(exc) from None


class RealtimeSession:
    """One pipecat realtime connection: load, hello, then client events until it closes."""

    kind: ClassVar[Kind]
    client_events: ClassVar[frozenset[str]]

    def __init__(self, transport: Transport, services: Services, model: ResolvedModel) -> None:
        self.transport = transport
        self.services = services
        self.model = model
        self.name = model.name
        self.session_id = new_id("session")
        self.closed = False
        self.started = time.monotonic()
        self.adapter = ""
        self.languages: list[str] = []

    async def run(self) -> None:
        try:
            try:
                await self._load()
            except SessionRefused as exc:
                await self.send(error_event(exc.code, exc.message))
                await self.transport.close(exc.close_code, exc.code)
                return
            await self.opened()
            while not self.closed:
                frame = await self.transport.receive()
                try:
                    await self._dispatch(frame)
                except ProtocolError as exc:
                    await self.send(
                        error_event(
                            exc.code,
                            exc.message,
                            client_event_id=exc.client_event_id,
                            retry_after_ms=exc.retry_after_ms,
                        )
                    )
        except ClientGone:
            log.debug("realtime %s %s: client gone", self.kind, self.session_id)
        finally:
            await self.stop()

    async def send(self, event: dict[str, Any]) -> None:
        await self.transport.send_event(event)

    async def _load(self) -> None:
        try:
            loaded = loaded_model(self.services, self.name)
            if loaded is not None:
                info = loaded.info  # no reference: a hello never waits in the queue
            else:  # load it now, so a model that cannot load fails before hello
                async with self.services.scheduler.use(self.name) as held:
                    info = held.info
        except Exception as exc:
            raise refusal(exc) from None
        self.adapter = info.adapter
        self.languages = list(info.languages) or list(self.model.manifest.entry.languages)
        self.learn(info)

    async def _dispatch(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.on_binary(frame)
            return
        message = parse(frame)
        kind = message["type"]
        eid = client_event_id(message)
        try:
            if kind not in self.client_events:
                raise ProtocolError("unsupported_event", f"unknown event: {kind}")
            if kind == "server.status":
                await self.send(self.status())
            elif kind in ("session.close", "session.cancel"):
                await self._end(drain=kind == "session.close")
            else:
                await self.on_event(kind, message, eid)
        except ProtocolError as exc:
            exc.client_event_id = eid
            raise

    async def _end(self, *, drain: bool) -> None:
        await self.finish(drain=drain)
        self.closed = True
        await self.send(
            {
                "type": "session.closed",
                "event_id": event_id(),
                "session_id": self.session_id,
                "reason": "client_close" if drain else "client_cancel",
            }
        )
        await self.transport.close(1000, "")

    def backend(self) -> dict[str, str]:
        return {"name": f"vox-{self.adapter}", "model": self.name}

    def status(self) -> dict[str, Any]:
        """``server.status``: the session's own facts, then the server's (a Vox extension)."""
        vox = vox_status(self.services)
        return {
            "type": "server.status",
            "event_id": event_id(),
            "session_id": self.session_id,
            "backend": self.backend(),
            "queue_depth": model_load(self.services, self.name),
            **self.status_extra(),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "pid": vox["pid"],
            "vox": vox,
        }

    # ---------------------------------------------------------------- the protocol's own

    def learn(self, info: ModelInfo) -> None:
        """Take what the protocol needs from the loaded model, before hello."""

    async def opened(self) -> None:
        """Send hello (and whatever else opens the session)."""
        raise NotImplementedError

    def on_binary(self, frame: bytes) -> None:
        raise ProtocolError("invalid_event", "binary frames are not supported")

    async def on_event(self, kind: str, message: dict[str, Any], eid: str | None) -> None:
        raise NotImplementedError

    def status_extra(self) -> dict[str, Any]:
        return {}

    async def finish(self, *, drain: bool) -> None:
        """Before ``session.closed``: let work in flight end (drain) or drop it."""

    async def stop(self) -> None:
        """The connection is over (closed or gone): stop any work still running."""

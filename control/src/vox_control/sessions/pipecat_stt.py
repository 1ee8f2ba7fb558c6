"""The pipecat-local-stt-server 0.4.0 protocol: pcm16 audio in, commit, transcript events out."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from vox_control.audio.decode import WHISPER_RATE
from vox_control.inference import ResolvedModel, TranscribeOptions, transcribe_loaded
from vox_control.lazy import lazy_module
from vox_control.scheduler.scheduled import LoadedModel
from vox_control.services import Services
from vox_control.sessions.pipecat_wire import (
    AUDIO_FORMAT,
    PROTOCOL_VERSION,
    ClientGone,
    ProtocolError,
    Transport,
    backend_error,
    error_object,
    event_id,
    new_id,
    reply,
)
from vox_control.sessions.skeleton import RealtimeSession

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

log = logging.getLogger("vox.realtime.stt")

MAX_APPEND_BYTES = 1024 * 1024  # one binary frame or append event (the peers' limit)
MAX_UNCOMMITTED_SECONDS = 300
CLIENT_EVENTS = frozenset(
    {
        "session.update",
        "transcription_session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "server.status",
        "session.close",
        "session.cancel",
    }
)


class SttRealtime(RealtimeSession):
    """One connection: load the model, hello + session.created, then audio and commits."""

    kind = "stt"
    client_events = CLIENT_EVENTS

    def __init__(self, transport: Transport, services: Services, model: ResolvedModel) -> None:
        super().__init__(transport, services, model)
        self.buffer = bytearray()
        self.rate = WHISPER_RATE  # what the client sends; 16 kHz unless it says otherwise
        self.language: str | None = None
        # Decodes run one after another, in commit order, each holding its model reference.
        self.decodes: list[asyncio.Task[None]] = []

    async def opened(self) -> None:
        await self.send(self._hello())
        for kind in ("session.created", "transcription_session.created"):
            event = reply(kind, None)
            event["session"] = self._snapshot()
            await self.send(event)

    async def stop(self) -> None:
        await self._cancel_decodes()

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "server.hello",
            "event_id": event_id(),
            "protocol_version": PROTOCOL_VERSION,
            "capabilities": {
                "binary_audio": True,
                "base64_audio_append": True,
                "server_vad": False,
            },
            "audio": {"format": AUDIO_FORMAT, "rate": WHISPER_RATE, "channels": 1},
            "backend": self.backend(),
        }

    def _snapshot(self) -> dict[str, Any]:
        fmt = {"encoding": AUDIO_FORMAT, "rate": self.rate, "channels": 1}
        return {
            "id": self.session_id,
            "object": "realtime.transcription_session",
            "type": "transcription",
            "input_audio_format": AUDIO_FORMAT,
            "turn_detection": None,
            "input_audio_transcription": {"language": self.language},
            "audio": {"input": {"format": fmt, "turn_detection": None, "language": self.language}},
        }

    def on_binary(self, frame: bytes) -> None:
        self._append(frame)

    async def on_event(self, kind: str, message: dict[str, Any], eid: str | None) -> None:
        if kind in ("session.update", "transcription_session.update"):
            await self._on_update(message, eid)
        elif kind == "input_audio_buffer.append":
            audio = message.get("audio")
            if not isinstance(audio, str):
                raise ProtocolError("invalid_event", "input_audio_buffer.append missing audio")
            try:
                self._append(base64.b64decode(audio, validate=True))
            except binascii.Error as exc:
                raise ProtocolError("invalid_event", f"audio base64 decode failed: {exc}") from None
        elif kind == "input_audio_buffer.commit":
            await self._on_commit(eid)
        else:  # input_audio_buffer.clear
            self.buffer.clear()
            await self.send(reply("input_audio_buffer.cleared", eid))

    def _append(self, data: bytes) -> None:
        if len(data) > MAX_APPEND_BYTES:
            raise ProtocolError("payload_too_large", "audio append exceeds 1 MiB")
        if len(data) % 2:
            raise ProtocolError("invalid_event", f"audio length {len(data)} is not a multiple of 2")
        if len(self.buffer) + len(data) > MAX_UNCOMMITTED_SECONDS * self.rate * 2:
            raise ProtocolError(
                "buffer_overflow",
                f"uncommitted audio exceeds {MAX_UNCOMMITTED_SECONDS} s; commit more often",
            )
        self.buffer.extend(data)

    async def _on_update(self, message: dict[str, Any], eid: str | None) -> None:
        session = message.get("session") or {}
        if not isinstance(session, dict):
            raise ProtocolError("invalid_config", "session must be an object")
        audio_in = (session.get("audio") or {}).get("input") or {}
        root_format = session.get("input_audio_format")
        if root_format is not None and root_format != AUDIO_FORMAT:
            raise ProtocolError("invalid_config", "only 'pcm16' input_audio_format is supported")
        fmt = audio_in.get("format") or {}
        rate = self.rate
        if fmt:
            if fmt.get("encoding", AUDIO_FORMAT) != AUDIO_FORMAT:
                raise ProtocolError("invalid_config", "only pcm16 encoding is supported")
            if fmt.get("channels", 1) != 1:
                raise ProtocolError("invalid_config", "only mono audio is supported")
            rate = fmt.get("rate", WHISPER_RATE)
            # Vox extension: any rate in 8..192 kHz is resampled to the model's rate.
            if not isinstance(rate, int) or not 8000 <= rate <= 192_000:
                raise ProtocolError("invalid_config", "rate must be an integer in 8000..192000")
        for container in (session, audio_in):
            if container.get("turn_detection") is not None:
                raise ProtocolError(
                    "invalid_config", "server VAD is not implemented; use turn_detection: null"
                )
        language = audio_in.get("language", self.language)
        transcription = session.get("input_audio_transcription")
        if isinstance(transcription, dict) and "language" in transcription:
            language = transcription["language"]
        if language in ("", "auto"):
            language = None
        if language is not None:
            if not isinstance(language, str):
                raise ProtocolError("invalid_config", "language must be a string")
            if self.languages and language not in self.languages:
                raise ProtocolError(
                    "invalid_config", f"language {language!r} is not supported by {self.name}"
                )
        if rate != self.rate and self.buffer:
            raise ProtocolError("invalid_config", "commit or clear the buffer before a new rate")
        self.rate, self.language = rate, language
        for kind in ("session.updated", "transcription_session.updated"):
            event = reply(kind, eid)
            event["session"] = self._snapshot()
            await self.send(event)

    async def _on_commit(self, eid: str | None) -> None:
        if not self.buffer:
            raise ProtocolError("buffer_empty", "commit on empty buffer")
        stack = contextlib.AsyncExitStack()
        try:
            # Admission now: a full model queue answers `busy` and keeps the audio.
            model = await stack.enter_async_context(self.services.scheduler.use(self.name))
        except Exception as exc:
            raise backend_error(exc) from None
        audio, rate = bytes(self.buffer), self.rate
        self.buffer.clear()
        item = new_id("item")
        event = reply("input_audio_buffer.committed", eid)
        event["item_id"] = item
        try:
            await self.send(event)
        except BaseException:
            await stack.aclose()
            raise
        previous = self.decodes[-1] if self.decodes else None
        task = asyncio.create_task(self._decode(previous, model, stack, audio, rate, item))
        self.decodes = [t for t in self.decodes if not t.done()] + [task]

    async def _decode(
        self,
        previous: asyncio.Task[None] | None,
        model: LoadedModel,
        stack: contextlib.AsyncExitStack,
        audio: bytes,
        rate: int,
        item: str,
    ) -> None:
        async with stack:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(previous)  # transcripts come back in commit order
            try:
                pcm = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
                options = TranscribeOptions(language=self.language)
                result = await transcribe_loaded(model, pcm, rate, options)
            except (asyncio.CancelledError, ClientGone):
                raise
            except Exception as exc:
                log.warning("realtime stt %s: decode failed: %s", self.name, exc)
                mapped = backend_error(exc)
                event = reply("conversation.item.input_audio_transcription.failed", None)
                event.update(
                    item_id=item, content_index=0, error=error_object(mapped.code, mapped.message)
                )
                await self.send(event)
                return
        text = result.text.strip()
        for kind, key in (("delta", "delta"), ("completed", "transcript")):
            event = reply(f"conversation.item.input_audio_transcription.{kind}", None)
            event.update({"item_id": item, "content_index": 0, key: text})
            await self.send(event)

    def status_extra(self) -> dict[str, Any]:
        return {"uncommitted_bytes": len(self.buffer)}

    async def finish(self, *, drain: bool) -> None:
        if drain:
            pending = [t for t in self.decodes if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=self.services.settings.drain_timeout)
        else:
            self.buffer.clear()
        await self._cancel_decodes()

    async def _cancel_decodes(self) -> None:
        for task in self.decodes:
            task.cancel()
        await asyncio.gather(*self.decodes, return_exceptions=True)
        self.decodes = []

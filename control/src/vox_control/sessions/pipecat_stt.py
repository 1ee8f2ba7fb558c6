"""The pipecat-local-stt-server 0.4.0 protocol: pcm16 audio in, commit, transcript events out."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from typing import Any

import numpy as np
from vox_protocol import Transcribe, Transcript

from vox_control.audio.decode import WHISPER_RATE
from vox_control.audio.resample import resample
from vox_control.scheduler.scheduled import LoadedModel
from vox_control.services import Services
from vox_control.sessions.pipecat_wire import (
    AUDIO_FORMAT,
    PROTOCOL_VERSION,
    ClientGone,
    ProtocolError,
    SessionRefused,
    Transport,
    backend_error,
    client_event_id,
    error_event,
    error_object,
    event_id,
    loaded_model,
    model_load,
    new_id,
    parse,
    refusal,
    reply,
    vox_status,
)

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


class SttRealtime:
    """One connection: load the model, hello + session.created, then audio and commits."""

    def __init__(self, transport: Transport, services: Services, name: str) -> None:
        self.transport = transport
        self.services = services
        self.name = name
        self.session_id = new_id("session")
        self.buffer = bytearray()
        self.rate = WHISPER_RATE  # what the client sends; 16 kHz unless it says otherwise
        self.language: str | None = None
        self.languages: list[str] = []
        self.adapter = ""
        self.closed = False
        self.started = time.monotonic()
        # Decodes run one after another, in commit order, each holding its model reference.
        self.decodes: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        try:
            try:
                await self._load()
            except SessionRefused as exc:
                await self.transport.send_event(error_event(exc.code, exc.message))
                await self.transport.close(exc.close_code, exc.code)
                return
            await self.transport.send_event(self._hello())
            for kind in ("session.created", "transcription_session.created"):
                event = reply(kind, None)
                event["session"] = self._snapshot()
                await self.transport.send_event(event)
            while not self.closed:
                frame = await self.transport.receive()
                try:
                    await self._dispatch(frame)
                except ProtocolError as exc:
                    await self.transport.send_event(
                        error_event(
                            exc.code,
                            exc.message,
                            client_event_id=exc.client_event_id,
                            retry_after_ms=exc.retry_after_ms,
                        )
                    )
        except ClientGone:
            log.debug("realtime stt %s: client gone", self.session_id)
        finally:
            await self._cancel_decodes()

    async def _load(self) -> None:
        try:
            manifest = self.services.manifest(self.name, "stt")
            model = loaded_model(self.services, self.name)
            if model is None:  # load it now, so a model that cannot load fails before hello
                async with self.services.scheduler.use(self.name) as model:
                    pass
            self.languages = list(model.info.languages) or list(manifest.entry.languages)
            self.adapter = model.info.adapter
        except Exception as exc:
            raise refusal(exc) from None

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
            "backend": {"name": f"vox-{self.adapter}", "model": self.name},
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

    async def _dispatch(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self._append(frame)
            return
        message = parse(frame)
        kind = message["type"]
        eid = client_event_id(message)
        try:
            if kind not in CLIENT_EVENTS:
                raise ProtocolError("unsupported_event", f"unknown event: {kind}")
            if kind in ("session.update", "transcription_session.update"):
                await self._on_update(message, eid)
            elif kind == "input_audio_buffer.append":
                audio = message.get("audio")
                if not isinstance(audio, str):
                    raise ProtocolError("invalid_event", "input_audio_buffer.append missing audio")
                try:
                    self._append(base64.b64decode(audio, validate=True))
                except binascii.Error as exc:
                    raise ProtocolError(
                        "invalid_event", f"audio base64 decode failed: {exc}"
                    ) from None
            elif kind == "input_audio_buffer.commit":
                await self._on_commit(eid)
            elif kind == "input_audio_buffer.clear":
                self.buffer.clear()
                await self.transport.send_event(reply("input_audio_buffer.cleared", eid))
            elif kind == "server.status":
                await self.transport.send_event(self._status())
            else:
                await self._on_end(drain=kind == "session.close")
        except ProtocolError as exc:
            exc.client_event_id = eid
            raise

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
            await self.transport.send_event(event)

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
            await self.transport.send_event(event)
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
                target = model.info.sample_rate or WHISPER_RATE
                if rate != target:
                    pcm = await asyncio.to_thread(resample, pcm, rate, target)
                runner = model.runner
                result = await runner.request(
                    Transcribe(
                        id=runner.next_id(),
                        audio=pcm.tobytes(),
                        sample_rate=target,
                        language=self.language,
                    )
                )
                if not isinstance(result, Transcript):
                    raise TypeError(f"unexpected reply from the runner: {type(result).__name__}")
            except (asyncio.CancelledError, ClientGone):
                raise
            except Exception as exc:
                log.warning("realtime stt %s: decode failed: %s", self.name, exc)
                mapped = backend_error(exc)
                event = reply("conversation.item.input_audio_transcription.failed", None)
                event.update(
                    item_id=item, content_index=0, error=error_object(mapped.code, mapped.message)
                )
                await self.transport.send_event(event)
                return
        text = result.text.strip()
        for kind, key in (("delta", "delta"), ("completed", "transcript")):
            event = reply(f"conversation.item.input_audio_transcription.{kind}", None)
            event.update({"item_id": item, "content_index": 0, key: text})
            await self.transport.send_event(event)

    def _status(self) -> dict[str, Any]:
        vox = vox_status(self.services)
        return {
            "type": "server.status",
            "event_id": event_id(),
            "session_id": self.session_id,
            "backend": {"name": f"vox-{self.adapter}", "model": self.name},
            "queue_depth": model_load(self.services, self.name),
            "uncommitted_bytes": len(self.buffer),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "pid": vox["pid"],
            "vox": vox,
        }

    async def _on_end(self, *, drain: bool) -> None:
        self.closed = True
        if drain:
            pending = [t for t in self.decodes if not t.done()]
            if pending:
                timeout = self.services.settings.drain_timeout
                await asyncio.wait(pending, timeout=timeout)
        else:
            self.buffer.clear()
        await self._cancel_decodes()
        event = reply("session.closed", None)
        event.update(
            session_id=self.session_id, reason="client_close" if drain else "client_cancel"
        )
        await self.transport.send_event(event)
        await self.transport.close(1000, "")

    async def _cancel_decodes(self) -> None:
        for task in self.decodes:
            task.cancel()
        await asyncio.gather(*self.decodes, return_exceptions=True)
        self.decodes = []

"""The pipecat-local-tts-server 0.7.0 protocol: text commits in, 20 ms pcm16 deltas out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from vox_protocol import Synthesize

from vox_control.audio.resample import ToRate
from vox_control.errors import BadRequest
from vox_control.inference import MAX_SPEED, MIN_SPEED
from vox_control.scheduler.scheduled import LoadedModel
from vox_control.services import Services
from vox_control.sessions.pipecat_wire import (
    AUDIO_FORMAT,
    BUSY_RETRY_AFTER_MS,
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
from vox_control.store.disk import Manifest
from vox_control.text.sentences import SentenceSplitter
from vox_control.validation import check_no_nul

log = logging.getLogger("vox.realtime.tts")

FRAME_MS = 20  # the peers' wire frame: bounds how much audio one delta carries
IDEAL_WORDS = 40  # the client rounds this up to a sentence boundary per commit
MAX_TEXT_CHARS = 5000  # hard cap on one commit's text
CLIENT_EVENTS = frozenset(
    {
        "session.update",
        "input_text.append",
        "input_text.commit",
        "input_text.clear",
        "response.cancel",
        "session.cancel",
        "session.close",
        "server.status",
    }
)


class _Stopped(Exception):
    """The response was cancelled while its synthesis was still running."""


@dataclass
class _Response:
    id: str
    text: str
    voice: str | None
    language: str | None
    speed: float
    cancelled: bool = False
    terminal: bool = False  # done, failed or cancelled was sent: nothing else may follow
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class TtsRealtime:
    """One connection: resolve and load the model, ``server.hello``, then client events."""

    def __init__(self, transport: Transport, services: Services, name: str) -> None:
        self.transport = transport
        self.services = services
        self.name = name
        self.session_id = new_id("session")
        self.buffer = ""
        self.config: dict[str, Any] = {"voice": None, "language": None, "extras": {}}
        self.created_sent = False
        self.closed = False
        self.response: _Response | None = None
        self.started = time.monotonic()
        # Held while checking `cancelled` and sending a delta, and while acknowledging a
        # cancel: so no delta can follow `response.cancelled`.
        self.lock = asyncio.Lock()
        self.rate = 0
        self.voices: list[str] = []
        self.languages: list[str] = []
        self.adapter = ""
        self.manifest: Manifest | None = None

    # ------------------------------------------------------------------ session

    async def run(self) -> None:
        try:
            try:
                await self._load()
            except SessionRefused as exc:
                await self._send(error_event(exc.code, exc.message))
                await self.transport.close(exc.close_code, exc.code)
                return
            await self._send(self._hello())
            while not self.closed:
                frame = await self.transport.receive()
                try:
                    await self._dispatch(frame)
                except ProtocolError as exc:
                    await self._send(
                        error_event(
                            exc.code,
                            exc.message,
                            client_event_id=exc.client_event_id,
                            retry_after_ms=exc.retry_after_ms,
                        )
                    )
        except ClientGone:
            log.debug("realtime tts %s: client gone", self.session_id)
        finally:
            if self.response is not None:
                await self._stop(self.response)

    async def _load(self) -> None:
        try:
            manifest = self.services.manifest(self.name, "tts")
            loaded = loaded_model(self.services, self.name)
            if loaded is not None:
                self._learn(manifest, loaded)  # no reference: a hello never waits in the queue
                return
            async with self.services.scheduler.use(self.name) as model:
                self._learn(manifest, model)
        except Exception as exc:
            raise refusal(exc) from None

    def _learn(self, manifest: Manifest, model: LoadedModel) -> None:
        info = model.info
        self.rate = info.sample_rate  # the true rate, from the loaded model
        self.voices = [v.id for v in info.voices] or list(manifest.entry.voices)
        self.languages = list(info.languages) or list(manifest.entry.languages)
        self.adapter = info.adapter
        self.manifest = manifest

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "server.hello",
            "event_id": event_id(),
            "protocol_version": PROTOCOL_VERSION,
            "backend": {"name": f"vox-{self.adapter}", "model": self.name},
            "audio": {"format": AUDIO_FORMAT, "rate": self.rate, "channels": 1},
            "capabilities": {
                # Audio streams per sentence, not below a sentence: the peers' meaning.
                "streaming": False,
                "binary_audio": False,
                "text_formats": ["plain"],
                "languages": self.languages,
                "voice_count": len(self.voices),
                "extras": ["speed"],
                "ideal_words": IDEAL_WORDS,
                "max_text_chars": MAX_TEXT_CHARS,
            },
        }

    async def _send(self, event: dict[str, Any]) -> None:
        await self.transport.send_event(event)

    # ------------------------------------------------------------------ events

    async def _dispatch(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            raise ProtocolError("invalid_event", "binary frames are not supported")
        message = parse(frame)
        kind = message["type"]
        eid = client_event_id(message)
        try:
            if kind not in CLIENT_EVENTS:
                raise ProtocolError("unsupported_event", f"unknown event: {kind}")
            elif kind == "session.update":
                await self._on_update(message, eid)
            elif kind == "input_text.append":
                self._on_append(message)
            elif kind == "input_text.commit":
                await self._on_commit(message, eid)
            elif kind == "input_text.clear":
                self.buffer = ""
                await self._send(reply("input_text.cleared", eid))
            elif kind == "response.cancel":
                await self._on_cancel(message.get("response_id"))
            elif kind == "session.cancel":
                await self._on_session_end(drain=False)
            elif kind == "session.close":
                await self._on_session_end(drain=True)
            else:
                await self._send(self._status())
        except ProtocolError as exc:
            exc.client_event_id = eid
            raise

    async def _on_update(self, message: dict[str, Any], eid: str | None) -> None:
        allowed = {"type", "event_id", "voice", "model", "language", "audio_format", "extras"}
        unknown = sorted(k for k in message if k not in allowed)
        if unknown:
            raise ProtocolError(
                "invalid_config", f"unknown session.update field(s): {', '.join(unknown)}"
            )
        audio_format = message.get("audio_format")
        if audio_format is not None and audio_format != AUDIO_FORMAT:
            raise ProtocolError(
                "unsupported_format", f"only 'pcm16' at {self.rate} Hz is supported"
            )
        model = message.get("model")
        if model is not None and model != self.name:
            raise ProtocolError(
                "invalid_config",
                f"unsupported model {model!r}: this session serves {self.name!r}; "
                f"connect to /v1/realtime/tts?model={model} for another model",
            )
        language = self._language(message.get("language"))
        voice = self._voice(message.get("voice"))
        extras = self._extras(message.get("extras"))
        if voice is not None:
            self.config["voice"] = voice
        if language is not None:
            self.config["language"] = language
        self.config["extras"] = {**self.config["extras"], **extras}
        kind = "session.updated" if self.created_sent else "session.created"
        self.created_sent = True
        event = reply(kind, eid)
        event["session"] = {
            "id": self.session_id,
            "voice": self.config["voice"],
            "model": self.name,
            "language": self.config["language"],
            "extras": dict(self.config["extras"]),
            "audio_format": AUDIO_FORMAT,
        }
        await self._send(event)

    def _on_append(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if not isinstance(text, str):
            raise ProtocolError("invalid_config", "input_text.append missing text")
        try:
            check_no_nul(text, "text")
        except BadRequest as exc:
            raise ProtocolError("invalid_event", exc.message) from None
        text_format = message.get("text_format", "plain")
        if text_format != "plain":
            raise ProtocolError(
                "invalid_config", f"unsupported text_format {text_format!r}; only ['plain']"
            )
        if len(self.buffer) + len(text) > MAX_TEXT_CHARS:
            raise ProtocolError(
                "payload_too_large",
                f"buffered text would exceed max_text_chars ({MAX_TEXT_CHARS})",
            )
        self.buffer += text

    async def _on_commit(self, message: dict[str, Any], eid: str | None) -> None:
        allowed = {"type", "event_id", "voice", "language", "extras"}
        unknown = sorted(k for k in message if k not in allowed)
        if unknown:
            raise ProtocolError(
                "invalid_config", f"unknown input_text.commit field(s): {', '.join(unknown)}"
            )
        language = self._language(message.get("language")) or self.config["language"]
        voice = self._voice(message.get("voice")) or self.config["voice"]
        extras = {**self.config["extras"], **self._extras(message.get("extras"))}
        if not self.buffer.strip():
            raise ProtocolError("buffer_empty", "commit on empty buffer")
        if self.response is not None:
            # One response per connection keeps response.cancel unambiguous (the peers' K=1).
            raise ProtocolError(
                "busy",
                "a response is already in flight on this connection",
                retry_after_ms=BUSY_RETRY_AFTER_MS,
            )
        # Admission: a full model queue refuses the commit now, the buffer kept for a retry.
        stack = contextlib.AsyncExitStack()
        try:
            model = await stack.enter_async_context(self.services.scheduler.use(self.name))
        except Exception as exc:
            raise backend_error(exc) from None
        response = _Response(
            new_id("resp"), self.buffer, voice, language, float(extras.get("speed", 1.0))
        )
        self.buffer = ""
        self.response = response
        try:
            committed = reply("input_text.committed", eid)
            committed["response_id"] = response.id
            await self._send(committed)
            await self._send(
                {"type": "response.created", "event_id": event_id(), "response_id": response.id}
            )
        except BaseException:
            await stack.aclose()
            raise
        response.task = asyncio.create_task(self._drain(response, model, stack))

    async def _on_cancel(self, target: Any) -> None:
        response = self.response
        if response is None or response.terminal or (target is not None and target != response.id):
            return  # nothing matching is in flight: a no-op, as the peers do
        async with self.lock:
            response.terminal = response.cancelled = True
            await self._send(
                {"type": "response.cancelled", "event_id": event_id(), "response_id": response.id}
            )
        await self._stop(response)

    async def _on_session_end(self, *, drain: bool) -> None:
        response = self.response
        if response is not None:
            if drain:
                timeout = self.services.settings.drain_timeout
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(response.done.wait(), timeout)
            response.cancelled = True
            await self._stop(response)
        if not drain:
            self.buffer = ""
        self.closed = True
        await self._send(
            {
                "type": "session.closed",
                "event_id": event_id(),
                "session_id": self.session_id,
                "reason": "client_close" if drain else "client_cancel",
            }
        )
        await self.transport.close(1000, "")

    def _status(self) -> dict[str, Any]:
        return {
            "type": "server.status",
            "event_id": event_id(),
            "session_id": self.session_id,
            "backend": {"name": f"vox-{self.adapter}", "model": self.name},
            "audio": {"format": AUDIO_FORMAT, "rate": self.rate, "channels": 1},
            "queue_depth": model_load(self.services, self.name),
            "voice_count": len(self.voices),
            "voices": self.voices,
            "buffered_chars": len(self.buffer),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "pid": vox_status(self.services)["pid"],
            "vox": vox_status(self.services),
        }

    # ------------------------------------------------------------------ validation

    def _language(self, language: Any) -> str | None:
        if language is None:
            return None
        if not isinstance(language, str):
            raise ProtocolError("invalid_config", "language must be a string")
        known = {code.lower() for code in self.languages}
        short = {code.lower().replace("_", "-").split("-")[0] for code in self.languages}
        if known and language.lower() not in known | short:
            raise ProtocolError(
                "invalid_config",
                f"unsupported language {language!r}; supported: {', '.join(self.languages)}",
            )
        return language

    def _voice(self, voice: Any) -> str | None:
        if voice is None:
            return None
        if not isinstance(voice, str):
            raise ProtocolError("invalid_config", "voice must be a string")
        assert self.manifest is not None  # set before hello
        try:
            mapped = self.services.voice_for(self.manifest, voice)
        except BadRequest as exc:
            raise ProtocolError("invalid_config", exc.message) from None
        if mapped is not None and self.voices and mapped not in self.voices:
            raise ProtocolError(
                "invalid_config", f"unknown voice {voice!r}; server.status lists the voices"
            )
        return mapped

    def _extras(self, extras: Any) -> dict[str, Any]:
        if extras is None:
            return {}
        if not isinstance(extras, dict):
            raise ProtocolError("invalid_config", "extras must be an object")
        for key in ("voice", "language", "text", "lang_code"):
            if key in extras:
                raise ProtocolError("invalid_config", f"extra {key!r} collides with a field")
        out: dict[str, Any] = {}
        if "speed" in extras:
            speed = extras["speed"]
            ok = isinstance(speed, int | float) and not isinstance(speed, bool)
            if not ok or not MIN_SPEED <= float(speed) <= MAX_SPEED:
                raise ProtocolError(
                    "invalid_config", f"speed must be a number in {MIN_SPEED}..{MAX_SPEED}"
                )
            out["speed"] = float(speed)
        return out  # other keys are dropped, as the peers drop unknown extras

    # ------------------------------------------------------------------ synthesis

    async def _drain(
        self, response: _Response, model: LoadedModel, stack: contextlib.AsyncExitStack
    ) -> None:
        """Speak the commit sentence by sentence, re-framed into gapless 20 ms deltas."""
        frame_bytes = self.rate * FRAME_MS // 1000 * 2
        carry = bytearray()
        seq = samples = 0
        to_rate = ToRate(self.rate)
        try:
            async with stack:  # the model's reference, released when the response ends
                runner = model.runner
                for sentence in split(response.text):
                    request = Synthesize(
                        id=runner.next_id(),
                        text=sentence,
                        voice=response.voice,
                        speed=response.speed,
                        language=response.language,
                    )
                    chunks = runner.stream(request)
                    try:
                        async for chunk in chunks:
                            pcm = chunk.audio
                            if chunk.sample_rate != self.rate:
                                # The advertised rate is a contract: convert, never relabel.
                                pcm = to_rate.push(pcm, chunk.sample_rate)
                            samples += len(pcm) // 2
                            carry.extend(pcm)
                            while len(carry) >= frame_bytes:
                                frame = bytes(carry[:frame_bytes])
                                del carry[:frame_bytes]
                                await self._delta(response, seq, frame)
                                seq += 1
                    finally:
                        await chunks.aclose()  # type: ignore[attr-defined]
            if carry:
                await self._delta(response, seq, bytes(carry))
            async with self.lock:
                if not response.terminal:
                    response.terminal = True
                    await self._send(
                        {
                            "type": "response.audio.done",
                            "event_id": event_id(),
                            "response_id": response.id,
                            "duration_ms": round(samples * 1000 / self.rate),
                        }
                    )
        except (asyncio.CancelledError, ClientGone, _Stopped):
            pass
        except Exception as exc:
            log.warning("realtime tts %s: synthesis failed: %s", self.name, exc)
            mapped = backend_error(exc)
            async with self.lock:
                if not response.terminal:
                    response.terminal = True
                    with contextlib.suppress(ClientGone):
                        await self._send(
                            {
                                "type": "response.failed",
                                "event_id": event_id(),
                                "response_id": response.id,
                                "error": error_object(mapped.code, mapped.message),
                            }
                        )
        finally:
            response.done.set()
            if self.response is response:
                self.response = None

    async def _delta(self, response: _Response, seq: int, frame: bytes) -> None:
        async with self.lock:
            if response.cancelled or response.terminal:
                raise _Stopped  # the client has its terminal event: no audio may follow
            await self._send(
                {
                    "type": "response.audio.delta",
                    "event_id": event_id(),
                    "response_id": response.id,
                    "seq": seq,
                    "audio": base64.b64encode(frame).decode("ascii"),
                }
            )

    async def _stop(self, response: _Response) -> None:
        """End a response's synthesis (closing its runner stream sends the runner a Cancel)."""
        response.cancelled = True
        task = response.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.response is response:
            self.response = None


def split(text: str) -> list[str]:
    """A commit's sentences (Vox's splitter): the first one's audio comes without the rest."""
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()

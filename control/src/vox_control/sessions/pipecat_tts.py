"""The pipecat-local-tts-server 0.7.0 protocol: text commits in, 20 ms pcm16 deltas out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from vox_protocol import ModelInfo

from vox_control.errors import BadRequest
from vox_control.inference import (
    MAX_SPEED,
    MIN_SPEED,
    ResolvedModel,
    SynthesisOptions,
    sentences_of,
    speak,
)
from vox_control.scheduler.scheduled import LoadedModel
from vox_control.services import Services
from vox_control.sessions.pipecat_wire import (
    AUDIO_FORMAT,
    BUSY_RETRY_AFTER_MS,
    PROTOCOL_VERSION,
    ClientGone,
    PcmFramer,
    ProtocolError,
    Transport,
    backend_error,
    error_object,
    event_id,
    new_id,
    reply,
)
from vox_control.sessions.skeleton import RealtimeSession
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


class TtsRealtime(RealtimeSession):
    """One connection: resolve and load the model, ``server.hello``, then client events."""

    kind = "tts"
    client_events = CLIENT_EVENTS

    def __init__(self, transport: Transport, services: Services, model: ResolvedModel) -> None:
        super().__init__(transport, services, model)
        self.buffer = ""
        self.config: dict[str, Any] = {"voice": None, "language": None, "extras": {}}
        self.created_sent = False
        self.response: _Response | None = None
        # Held while checking `cancelled` and sending a delta, and while acknowledging a
        # cancel: so no delta can follow `response.cancelled`.
        self.lock = asyncio.Lock()
        self.rate = 0
        self.voices: list[str] = []

    def learn(self, info: ModelInfo) -> None:
        self.rate = info.sample_rate  # the true rate, from the loaded model
        self.voices = [v.id for v in info.voices] or list(self.model.manifest.entry.voices)

    async def opened(self) -> None:
        await self.send(self._hello())

    async def stop(self) -> None:
        if self.response is not None:
            await self._stop(self.response)

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "server.hello",
            "event_id": event_id(),
            "protocol_version": PROTOCOL_VERSION,
            "backend": self.backend(),
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

    # ------------------------------------------------------------------ events

    async def on_event(self, kind: str, message: dict[str, Any], eid: str | None) -> None:
        if kind == "session.update":
            await self._on_update(message, eid)
        elif kind == "input_text.append":
            self._on_append(message)
        elif kind == "input_text.commit":
            await self._on_commit(message, eid)
        elif kind == "input_text.clear":
            self.buffer = ""
            await self.send(reply("input_text.cleared", eid))
        else:  # response.cancel
            await self._on_cancel(message.get("response_id"))

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
        await self.send(event)

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
            await self.send(committed)
            await self.send(
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
            await self.send(
                {"type": "response.cancelled", "event_id": event_id(), "response_id": response.id}
            )
        await self._stop(response)

    async def finish(self, *, drain: bool) -> None:
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

    def status_extra(self) -> dict[str, Any]:
        return {
            "audio": {"format": AUDIO_FORMAT, "rate": self.rate, "channels": 1},
            "voice_count": len(self.voices),
            "voices": self.voices,
            "buffered_chars": len(self.buffer),
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
        try:
            mapped = self.services.voice_for(self.model.manifest, voice)
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
        framer = PcmFramer(self.rate, FRAME_MS)
        seq = 0
        try:
            options = SynthesisOptions(response.voice, response.speed, response.language)
            async with stack:  # the model's reference, released when the response ends
                sentences = await sentences_of(response.text, response.language)
                speech = contextlib.aclosing(speak(model, sentences, options))
                async for chunk in await stack.enter_async_context(speech):
                    for frame in framer.push(chunk.audio, chunk.sample_rate):
                        await self._delta(response, seq, frame)
                        seq += 1
            if tail := framer.tail():
                await self._delta(response, seq, tail)
            async with self.lock:
                if not response.terminal:
                    response.terminal = True
                    await self.send(
                        {
                            "type": "response.audio.done",
                            "event_id": event_id(),
                            "response_id": response.id,
                            "duration_ms": round(framer.samples * 1000 / self.rate),
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
                        await self.send(
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
            await self.send(
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

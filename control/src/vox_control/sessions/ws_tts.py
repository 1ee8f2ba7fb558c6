"""WS /v1/audio/speech/stream: speak text as it arrives, sentence by sentence, with cancel."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any, Literal

import msgspec
from litestar import WebSocket, websocket

from vox_control.audio.encode import Encoder
from vox_control.audio.stream_encode import stream_encoder
from vox_control.errors import BadRequest
from vox_control.inference import SynthesisOptions, check_speed, speak, stream_key
from vox_control.services import Services
from vox_control.sessions.channel import (
    BAD_CONFIG,
    NORMAL,
    POLICY,
    TOO_LARGE,
    UNSUPPORTED_DATA,
    Channel,
    ClientGone,
    StreamError,
    convert,
    model_error,
    parse_message,
)
from vox_control.sessions.skeleton import StreamSession
from vox_control.text.sentences import SentenceSplitter
from vox_control.validation import check_no_nul


class TtsConfig(msgspec.Struct, forbid_unknown_fields=False):
    type: str
    model: str | None = None
    voice: str | None = None
    speed: float = 1.0
    language: str | None = None
    response_format: Literal["pcm16", "opus"] = "pcm16"
    sample_rate: int | None = None  # extension: resample pcm16 output to this rate


class TextMessage(msgspec.Struct, forbid_unknown_fields=False):
    type: str
    text: str
    flush: bool = False  # extension: speak what is buffered now, without waiting for more


class TtsSession(StreamSession):
    kind = "tts"

    def __init__(self, channel: Channel, services: Services) -> None:
        super().__init__(channel, services)
        self.splitter = SentenceSplitter()
        self.stream = stream_key()  # one speech stream for the runner's ordering
        self.pending: deque[str] = deque()
        self.wake = asyncio.Event()  # new sentences, or the end
        self.ended = False
        self.total_chars = 0
        self.completed_chars = 0
        self.chunks_completed = 0
        self.chunks_total = 0
        self.samples = 0  # at the model's rate, everything sent so far
        self.model_rate = 0
        self.encoder: Encoder | None = None  # created at the first audio of a stream

    async def serve(self) -> None:
        config = await self.receive_config(TtsConfig)
        await self._stream(config, await self._open(config))

    async def _open(self, config: TtsConfig) -> str:
        try:
            check_speed(config.speed)
        except BadRequest as exc:
            raise StreamError("invalid_config", exc.message, BAD_CONFIG, param="speed") from None
        if config.sample_rate is not None and not 8000 <= config.sample_rate <= 192_000:
            raise StreamError(
                "invalid_config",
                "sample_rate must be 8000..192000",
                BAD_CONFIG,
                param="sample_rate",
            )
        model, info = await self.open_model(config.model)
        name = model.name
        try:
            known = [v.id for v in info.voices]
            config.voice = self.services.voice_for(model.manifest, config.voice, known)
        except BadRequest as exc:
            raise model_error(exc) from None
        self.splitter = SentenceSplitter(language=config.language)
        self.model_rate = info.sample_rate
        await self.channel.send_event(
            {"type": "ready", "model": name, "response_format": config.response_format}
        )
        return name

    async def _stream(self, config: TtsConfig, name: str) -> None:
        started = time.perf_counter()
        worker = asyncio.create_task(self._work(config, name))
        try:
            while True:
                receive = asyncio.create_task(self.channel.receive())
                done, _ = await asyncio.wait({worker, receive}, return_when=asyncio.FIRST_COMPLETED)
                if worker in done:
                    receive.cancel()
                    worker.result()
                    break
                if await self._handle(receive.result()):
                    worker = await self._cancel(worker, config, name)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        await self.channel.send_event(
            {
                "type": "done",
                "response_format": config.response_format,
                "audio_duration_ms": self._duration_ms(),
                "processing_ms": round((time.perf_counter() - started) * 1000),
                "completed_chars": self.completed_chars,
                "total_chars": self.total_chars,
                "chunks_completed": self.chunks_completed,
            }
        )
        await self.channel.close(NORMAL)

    async def _handle(self, frame: str | bytes) -> bool:
        """Apply one client message; True when it is a cancel."""
        if isinstance(frame, bytes):
            raise StreamError(
                "unexpected_binary", "this endpoint takes JSON text frames only", UNSUPPORTED_DATA
            )
        message = parse_message(frame)
        kind = message["type"]
        if kind == "cancel":
            return True
        if self.ended and kind in ("text", "end"):
            raise StreamError("after_end", f"{kind!r} after end", POLICY)
        if kind == "text":
            text = convert(message, TextMessage, "invalid_message", POLICY)
            try:
                check_no_nul(text.text, "text")
            except BadRequest as exc:
                raise model_error(exc) from None
            self.total_chars += len(text.text)
            if self.total_chars > self.settings.stream_max_text_chars:
                raise StreamError(
                    "session_too_large",
                    f"the session's text exceeds {self.settings.stream_max_text_chars} "
                    "characters (VOX_STREAM_MAX_TEXT_CHARS)",
                    TOO_LARGE,
                )
            # Off the event loop: a message may carry a whole book (bounded, but not free).
            sentences = await asyncio.to_thread(self.splitter.feed, text.text)
            if text.flush:
                sentences += self.splitter.flush()
            self._queue(sentences)
        elif kind == "end":
            self._queue(self.splitter.flush())
            self.ended = True
            self.wake.set()
        elif kind == "config":
            raise StreamError("duplicate_config", "the session is already configured", POLICY)
        else:
            raise StreamError(
                "unknown_type", f"unknown message type {kind!r} (text, end, cancel)", POLICY
            )
        return False

    def _queue(self, sentences: list[str]) -> None:
        if sentences:
            self.pending.extend(sentences)
            self.chunks_total += len(sentences)
            self.wake.set()

    async def _cancel(
        self, worker: asyncio.Task[None], config: TtsConfig, name: str
    ) -> asyncio.Task[None]:
        """Stop the audio now: no binary frame follows the `cancelled` event."""
        worker.cancel()  # closes the runner stream, which sends the runner a Cancel
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        dropped = sum(len(s) for s in self.pending) + len(self.splitter.pending)
        self.pending.clear()
        self.splitter.reset()
        if self.encoder is not None:
            with contextlib.suppress(Exception):
                self.encoder.finish()  # its tail is dropped: the stream was cut
            self.encoder = None
        await self.channel.send_event(
            {
                "type": "cancelled",
                "audio_duration_ms": self._duration_ms(),
                "dropped_chars": dropped,
            }
        )
        # The session stays open for new text; after an earlier `end` it finishes at once.
        return asyncio.create_task(self._work(config, name))

    async def _work(self, config: TtsConfig, name: str) -> None:
        """Speak queued sentences in order as they come; returns after `end` and the last one."""
        while True:
            if not self.pending:
                if self.ended:
                    break
                self.wake.clear()
                await self.wake.wait()
                continue
            sentence = self.pending.popleft()
            await self._speak(config, name, sentence)
            self.completed_chars += len(sentence)
            self.chunks_completed += 1
            await self.channel.send_event(
                {
                    "type": "progress",
                    "completed_chars": min(self.completed_chars, self.total_chars),
                    "total_chars": self.total_chars,
                    "chunks_completed": self.chunks_completed,
                    "chunks_total": self.chunks_total,
                }
            )
        if self.encoder is not None:
            await self.channel.send_bytes(await asyncio.to_thread(self.encoder.finish))
            self.encoder = None
        self.completed_chars = self.total_chars  # whitespace between sentences counts too

    async def _speak(self, config: TtsConfig, name: str, sentence: str) -> None:
        options = SynthesisOptions(config.voice, config.speed, config.language)
        try:
            # Held per sentence: between sentences an idle session pins no runner. An early
            # exit (cancel, disconnect) closes the stream: the runner gets a Cancel.
            async with (
                self.services.scheduler.use(name) as model,
                contextlib.aclosing(speak(model, [sentence], options, self.stream)) as chunks,
            ):
                async for chunk in chunks:
                    await self._send_audio(config, chunk.audio, chunk.sample_rate)
        except (StreamError, ClientGone, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise model_error(exc) from None

    async def _send_audio(self, config: TtsConfig, pcm: bytes, rate: int) -> None:
        if self.encoder is None:
            self.encoder = stream_encoder(config.response_format, rate, config.sample_rate)
            await self.channel.send_event(
                {
                    "type": "audio_start",
                    "sample_rate": self.encoder.sample_rate,
                    "response_format": config.response_format,
                    "model_sample_rate": rate,
                }
            )
        self.model_rate = rate
        encoder = self.encoder
        data = (
            await asyncio.to_thread(encoder.push, pcm, rate)
            if config.response_format == "opus"
            else encoder.push(pcm, rate)
        )
        self.samples += len(pcm) // 2
        await self.channel.send_bytes(data)

    def _duration_ms(self) -> int:
        return round(self.samples * 1000 / self.model_rate) if self.model_rate else 0


@websocket("/v1/audio/speech/stream")
async def speech_stream(socket: WebSocket[Any, Any, Any], services: Services) -> None:
    """Long-form speech: config, text..., end -> ready, audio_start, audio frames, done."""
    await socket.accept()
    await TtsSession(Channel(socket), services).run()

"""The Wyoming protocol (Home Assistant, Rhasspy, satellites): every pulled model on one port.

One more session engine on the model-call seam: a connection's events are read here, its
work (describe, a transcription, a synthesis) runs in order in one worker task through
vox_control.inference, and the scheduler, store and memory budget are the HTTP server's.
A connection that closes cancels the worker, which closes the runner stream (a Cancel).
The listening socket: sessions/wyoming_server.py; names and framing: sessions/wyoming_info.py;
the user's guide: docs/wyoming.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import numpy as np
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from vox_control.audio.decode import AudioDecodeError
from vox_control.errors import BadRequest, PayloadTooLarge
from vox_control.inference import (
    ResolvedModel,
    SynthesisOptions,
    TranscribeOptions,
    check_text,
    open_synthesis,
    speak,
    transcribe,
)
from vox_control.logs import request_id
from vox_control.renderers import wyoming_error
from vox_control.services import Services
from vox_control.sessions.wyoming_info import (
    VoiceCatalog,
    describe,
    read_event,
    stt_model,
    tts_voice,
)
from vox_control.text.sentences import SentenceSplitter

log = logging.getLogger("vox.wyoming")

# What a client may send: absurd formats are refused, not converted.
MIN_RATE, MAX_RATE = 8000, 192_000
# Signed little-endian PCM by sample width, and the scale to [-1, 1) (audioop's convention).
WIDTHS = {1: ("<i1", 128.0), 2: ("<i2", 32768.0), 4: ("<i4", 2147483648.0)}
MAX_CHANNELS = 8
_QUEUED_JOBS = 8  # past this the session stops reading: TCP slows the client down
_ids = itertools.count(1)

Job = Callable[[], Awaitable[None]]


class ClientGone(Exception):
    """Writing to the peer failed: the connection is over."""


def to_float(chunk: AudioChunk) -> np.ndarray:
    """A chunk in any allowed width and channel count -> mono float32 at its own rate."""
    dtype, scale = WIDTHS[chunk.width]
    frame = chunk.width * chunk.channels
    usable = len(chunk.audio) - len(chunk.audio) % frame
    samples = np.frombuffer(chunk.audio[:usable], dtype=dtype).astype(np.float32) / scale
    mono: np.ndarray = samples.reshape(-1, chunk.channels).mean(axis=1, dtype=np.float32)
    return mono


def _integer(value: object) -> int:
    """An integer field's value; anything else (a string, a bool, missing) is out of range."""
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def check_format(data: dict[str, Any]) -> tuple[int, int, int]:
    rate, width, channels = (_integer(data.get(k)) for k in ("rate", "width", "channels"))
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioDecodeError(f"rate must be an integer from {MIN_RATE} to {MAX_RATE} Hz")
    if width not in WIDTHS:
        raise AudioDecodeError("width must be 1, 2 or 4 bytes")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioDecodeError(f"channels must be 1 to {MAX_CHANNELS}")
    return rate, width, channels


def parsed(kind: type[Any], event: Event) -> Any:
    """``kind.from_event``, with a malformed event as a 400 instead of a KeyError."""
    try:
        return kind.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BadRequest(f"malformed '{event.type}' event") from None


class WyomingSession:
    """One connection: events in order; transcriptions and syntheses in the worker."""

    def __init__(
        self,
        services: Services,
        catalog: VoiceCatalog,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.services = services
        self.catalog = catalog
        self.reader = reader
        self.writer = writer
        self.id = f"wy_{next(_ids)}"
        self.started = time.monotonic()
        self.state = "idle"
        self.model: str | None = None
        self.jobs: asyncio.Queue[Job] = asyncio.Queue(_QUEUED_JOBS)
        # Transcription: the request and the audio since audio-start.
        self.transcribe = Transcribe()
        self.audio: list[np.ndarray] = []
        self.rate = 0
        self.samples = 0
        self.audio_failed = False
        # Streaming synthesis: set from synthesize-start to synthesize-stop.
        self.splitter: SentenceSplitter | None = None
        self.voice: SynthesizeVoice | None = None
        self.stream_chars = 0
        self.stream_failed = False
        self.audio_started = False
        self.stream_model: tuple[ResolvedModel, int] | None = None
        self.stream_options = SynthesisOptions()

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": "wyoming",
            "state": self.state,
            "model": self.model,
            "age_s": round(time.monotonic() - self.started, 1),
        }

    async def run(self) -> None:
        request_id.set(self.id)  # the worker inherits it: every log line names the session
        worker = asyncio.create_task(self._work())
        try:
            while not worker.done():
                try:
                    event = await read_event(self.reader)
                except BadRequest as exc:
                    await self.fail(exc)  # the framing is lost: nothing more can be read
                    break
                if event is None:
                    break
                try:
                    await self.on_event(event)
                except BadRequest as exc:
                    await self.jobs.put(functools.partial(self.fail, exc))
        except (ConnectionError, ClientGone):
            pass
        finally:
            # A client that left mid-request: the runner gets a Cancel for its sentence.
            if self.state != "idle":
                log.info("wyoming %s: client gone while %s; cancelled", self.id, self.state)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def _work(self) -> None:
        while True:
            job = await self.jobs.get()
            try:
                await job()
            except ClientGone:
                return
            except Exception as exc:
                await self.fail(exc)
            finally:
                self.state = "idle"

    async def send(self, event: Event) -> None:
        try:
            await async_write_event(event, self.writer)
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone(str(exc)) from None

    async def fail(self, exc: BaseException) -> None:
        text, code = wyoming_error(exc)
        await self.send(Error(text=text, code=code).event())

    # ------------------------------------------------------------------ events

    async def on_event(self, event: Event) -> None:
        kind = event.type
        if Describe.is_type(kind):
            await self.jobs.put(self._describe)
        elif Ping.is_type(kind):
            await self.jobs.put(
                functools.partial(self.send, Pong(text=event.data.get("text")).event())
            )
        elif Transcribe.is_type(kind):
            self.transcribe = parsed(Transcribe, event)
        elif AudioStart.is_type(kind):
            self.audio, self.samples, self.rate, self.audio_failed = [], 0, 0, True
            self.rate = check_format(event.data)[0]
            self.audio_failed = False
        elif AudioChunk.is_type(kind):
            self._audio_chunk(event)
        elif AudioStop.is_type(kind):
            audio, rate, failed = self.audio, self.rate, self.audio_failed
            self.audio, self.samples, self.rate = [], 0, 0
            if not failed:
                request = self.transcribe
                await self.jobs.put(functools.partial(self._transcribe, request, audio, rate))
        elif Synthesize.is_type(kind):
            if self.splitter is None:  # while streaming it only repeats the chunks' text
                await self.jobs.put(functools.partial(self._synthesize, parsed(Synthesize, event)))
        elif SynthesizeStart.is_type(kind):
            self.voice = parsed(SynthesizeStart, event).voice
            self.splitter = SentenceSplitter()
            self.stream_chars, self.stream_failed, self.audio_started = 0, False, False
            await self.jobs.put(self._open_stream)
        elif SynthesizeChunk.is_type(kind):
            await self._stream_text(parsed(SynthesizeChunk, event).text)
        elif SynthesizeStop.is_type(kind):
            if self.splitter is not None:
                for sentence in self.splitter.flush():
                    await self.jobs.put(functools.partial(self._stream_sentence, sentence))
                self.splitter = None
                await self.jobs.put(self._close_stream)
        else:
            log.debug("wyoming %s: ignoring a %r event", self.id, kind)

    def _audio_chunk(self, event: Event) -> None:
        if self.audio_failed:
            return
        try:
            rate, _, _ = check_format(event.data)
            if self.rate and rate != self.rate:
                raise AudioDecodeError("every audio-chunk must have audio-start's rate")
            chunk = parsed(AudioChunk, event)
            self.rate = rate
            pcm = to_float(chunk)
            limit = self.services.settings.stream_max_audio_seconds
            if (self.samples + pcm.size) / rate > limit:
                raise PayloadTooLarge(
                    f"the audio exceeds {limit:g} s (VOX_STREAM_MAX_AUDIO_SECONDS)"
                )
        except BadRequest:
            self.audio, self.samples, self.audio_failed = [], 0, True
            raise
        self.audio.append(pcm)
        self.samples += pcm.size

    async def _stream_text(self, text: object) -> None:
        if self.splitter is None:
            raise BadRequest("synthesize-chunk before synthesize-start")
        if not isinstance(text, str):
            raise BadRequest("synthesize-chunk 'text' must be a string")
        self.stream_chars += len(text)
        limit = self.services.settings.stream_max_text_chars
        if self.stream_chars > limit:
            raise PayloadTooLarge(
                f"the text exceeds {limit} characters (VOX_STREAM_MAX_TEXT_CHARS)"
            )
        sentences = await asyncio.to_thread(self.splitter.feed, text)
        for sentence in sentences:
            await self.jobs.put(functools.partial(self._stream_sentence, sentence))

    # ------------------------------------------------------------------ jobs

    async def _describe(self) -> None:
        await self.send((await describe(self.services, self.catalog)).event())

    async def _transcribe(self, request: Transcribe, audio: list[np.ndarray], rate: int) -> None:
        if not audio or not rate:
            raise AudioDecodeError("no audio between audio-start and audio-stop")
        model = stt_model(self.services, request.name)
        self.state, self.model = "transcribing", model.name
        pcm = np.concatenate(audio)
        options = TranscribeOptions(language=request.language or None)
        result = await transcribe(self.services, model, pcm, rate, options)
        text = result.text.strip()
        language = result.language or request.language
        await self.send(TranscriptStart(language=language).event())
        for segment in result.segments or []:
            await self.send(TranscriptChunk(text=segment.text).event())
        await self.send(TranscriptStop().event())
        await self.send(Transcript(text=text, language=language).event())

    async def _synthesize(self, request: Synthesize) -> None:
        model, voice = tts_voice(self.services, request.voice)
        self.state, self.model = "synthesizing", model.name
        text = check_text(request.text, self.services.settings.stream_max_text_chars)
        # A voice picked by language is the model's: the runner gets no language to check.
        rate, audio = await open_synthesis(self.services, model, text, voice, 1.0)
        try:
            await self.send(AudioStart(rate=rate, width=2, channels=1).event())
            async for pcm, chunk_rate in audio:
                await self.send(AudioChunk(rate=chunk_rate, width=2, channels=1, audio=pcm).event())
        finally:
            # Cancelled while sending (the client left): closing it here cancels the runner's
            # sentence now, not when the generator is collected.
            if isinstance(audio, AsyncGenerator):
                await audio.aclose()
        await self.send(AudioStop().event())

    async def _open_stream(self) -> None:
        """synthesize-start: resolve the voice and load the model before the first sentence."""
        try:
            model, voice = tts_voice(self.services, self.voice)
            async with self.services.scheduler.use(model.name) as loaded:
                known = [v.id for v in loaded.info.voices]
                mapped = self.services.voice_for(model.manifest, voice, known)
        except Exception:
            self.stream_failed = True
            raise
        self.stream_model = (model, loaded.info.sample_rate)
        self.stream_options = SynthesisOptions(mapped, 1.0, None)

    async def _stream_sentence(self, sentence: str) -> None:
        if self.stream_failed or self.stream_model is None:
            return
        model, _ = self.stream_model
        self.state, self.model = "synthesizing", model.name
        try:
            # Held per sentence: an LLM that pauses between sentences pins no runner.
            async with (
                self.services.scheduler.use(model.name) as loaded,
                contextlib.aclosing(speak(loaded, [sentence], self.stream_options)) as chunks,
            ):
                async for chunk in chunks:
                    await self._start_audio(chunk.sample_rate)
                    await self.send(
                        AudioChunk(
                            rate=chunk.sample_rate, width=2, channels=1, audio=chunk.audio
                        ).event()
                    )
        except ClientGone:
            raise
        except Exception:
            self.stream_failed = True
            raise

    async def _start_audio(self, rate: int) -> None:
        if not self.audio_started:
            self.audio_started = True
            await self.send(AudioStart(rate=rate, width=2, channels=1).event())

    async def _close_stream(self) -> None:
        if self.stream_failed or self.stream_model is None:
            return
        await self._start_audio(self.stream_model[1])  # text that held no speech: empty audio
        await self.send(AudioStop().event())
        await self.send(SynthesizeStopped().event())

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
from vox_control.audio.long_audio import window_samples
from vox_control.errors import BadRequest, PayloadTooLarge, VoxError
from vox_control.inference import (
    ResolvedModel,
    SynthesisOptions,
    TranscribeOptions,
    open_synthesis,
    speak,
    stream_key,
    transcribe,
)
from vox_control.logs import request_id
from vox_control.renderers import wyoming_error
from vox_control.services import Services
from vox_control.sessions.wyoming_audio import Utterance, check_format, to_float, windowed
from vox_control.sessions.wyoming_info import (
    FrameError,
    VoiceCatalog,
    describe,
    read_event,
    stt_model,
    tts_voice,
)
from vox_control.text.sentences import SentenceSplitter
from vox_control.validation import check_text

log = logging.getLogger("vox.wyoming")

_QUEUED_JOBS = 8  # past this the session stops reading: TCP slows the client down
_ids = itertools.count(1)

Job = Callable[[], Awaitable[None]]


class ClientGone(Exception):
    """Writing to the peer failed: the connection is over."""


# The string fields Vox reads, per event type: anything else there is a malformed event.
_STRINGS = {
    "transcribe": ("name", "language"),
    "synthesize": ("text",),
    "synthesize-chunk": ("text",),
}
_VOICE_STRINGS = ("name", "language", "speaker")


def _text(value: object) -> bool:
    return value is None or isinstance(value, str)


def parsed(kind: type[Any], event: Event) -> Any:
    """``kind.from_event``, with a malformed event as a 400 instead of a KeyError."""
    data = event.data
    voice = data.get("voice") or {}
    if (
        not isinstance(voice, dict)
        or not all(_text(data.get(k)) for k in _STRINGS.get(event.type, ()))
        or not all(_text(voice.get(k)) for k in _VOICE_STRINGS)
    ):
        raise BadRequest(f"malformed '{event.type}' event: a field that must be text is not")
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
        self.stream = stream_key()  # one speech stream for the runner's ordering
        self.started = time.monotonic()
        self.state = "idle"
        self.model: str | None = None
        self.jobs: asyncio.Queue[Job] = asyncio.Queue(_QUEUED_JOBS)
        # Transcription: the request and the audio since audio-start.
        self.transcribe = Transcribe()
        self.utterance: Utterance | None = None  # from audio-start to audio-stop
        # Streaming synthesis: set from synthesize-start to synthesize-stop.
        self.splitter: SentenceSplitter | None = None
        self.streamed = False
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
        self.worker = worker = asyncio.create_task(self._work())
        try:
            while not worker.done():
                try:
                    event = await read_event(self.reader)
                except FrameError as exc:
                    # The framing is lost: nothing more can be read. What is queued is done,
                    # then the error is sent and the connection closed.
                    await self._enqueue(functools.partial(self.fail, exc))
                    await self._enqueue(self._end)
                    await asyncio.wait({worker})
                    break
                if event is None:
                    break
                try:
                    await self.on_event(event)
                except VoxError as exc:
                    await self._enqueue(functools.partial(self.fail, exc))
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

    async def _enqueue(self, job: Job) -> None:
        """Queue a job; while the queue is full the session reads nothing more (backpressure),
        unless the worker has ended (the client is gone)."""
        put = asyncio.ensure_future(self.jobs.put(job))
        await asyncio.wait({put, self.worker}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            raise ClientGone("the session's worker has ended")

    async def _end(self) -> None:
        raise ClientGone("the session ends")

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
            await self._enqueue(self._describe)
        elif Ping.is_type(kind):
            await self._enqueue(
                functools.partial(self.send, Pong(text=event.data.get("text")).event())
            )
        elif Transcribe.is_type(kind):
            self.transcribe = parsed(Transcribe, event)
        elif AudioStart.is_type(kind):
            self.utterance = None  # refused until this start is valid
            rate = check_format(event.data)[0]
            model = stt_model(self.services, self.transcribe.name)
            limit = self.services.settings.stream_max_audio_seconds
            self.utterance = Utterance(model, rate, limit)
        elif AudioChunk.is_type(kind):
            self._audio_chunk(event)
        elif AudioStop.is_type(kind):
            utterance, self.utterance = self.utterance, None
            if utterance is not None:
                language = self.transcribe.language
                await self._enqueue(functools.partial(self._transcribe, utterance, language))
        elif Synthesize.is_type(kind):
            # Once a connection streams, `synthesize` only repeats the chunks' text for older
            # servers (Home Assistant sends it before synthesize-stop); wyoming-piper ignores
            # it from then on too.
            if not self.streamed:
                await self._enqueue(functools.partial(self._synthesize, parsed(Synthesize, event)))
        elif SynthesizeStart.is_type(kind):
            self.voice = parsed(SynthesizeStart, event).voice
            self.splitter, self.streamed = SentenceSplitter(), True
            self.stream_chars, self.stream_failed, self.audio_started = 0, False, False
            await self._enqueue(self._open_stream)
        elif SynthesizeChunk.is_type(kind):
            await self._stream_text(parsed(SynthesizeChunk, event).text)
        elif SynthesizeStop.is_type(kind):
            if self.splitter is not None:
                for sentence in self.splitter.flush():
                    await self._enqueue(functools.partial(self._stream_sentence, sentence))
                self.splitter = None
                await self._enqueue(self._close_stream)
        else:
            log.debug("wyoming %s: ignoring a %r event", self.id, kind)

    def _audio_chunk(self, event: Event) -> None:
        utterance = self.utterance
        if utterance is None:
            return  # no valid audio-start: its error was sent; the chunks are dropped
        try:
            if check_format(event.data)[0] != utterance.rate:
                raise AudioDecodeError("every audio-chunk must have audio-start's rate")
            utterance.push(to_float(parsed(AudioChunk, event)))
        except VoxError:
            self.utterance = None
            raise

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
            await self._enqueue(functools.partial(self._stream_sentence, sentence))

    # ------------------------------------------------------------------ jobs

    async def _describe(self) -> None:
        await self.send((await describe(self.services, self.catalog)).event())

    async def _transcribe(self, utterance: Utterance, language: str | None) -> None:
        model, rate = utterance.model, utterance.resampler.out_rate
        self.state, self.model = "transcribing", model.name
        pcm = utterance.finish()
        if not pcm.size:
            raise AudioDecodeError("no audio between audio-start and audio-stop")
        options = TranscribeOptions(language=language or None)
        window = window_samples(rate, self.services.settings.max_frame_bytes)
        result = await transcribe(self.services, model, windowed(pcm, rate, window), rate, options)
        text = result.text.strip()
        language = result.language or language
        await self.send(TranscriptStart(language=language).event())
        for segment in result.segments or []:
            await self.send(TranscriptChunk(text=segment.text).event())
        await self.send(TranscriptStop().event())
        await self.send(Transcript(text=text, language=language).event())

    async def _synthesize(self, request: Synthesize) -> None:
        model, voice = tts_voice(self.services, request.voice)
        self.state, self.model = "synthesizing", model.name
        text = check_text(request.text, "text", self.services.settings.stream_max_text_chars)
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
                contextlib.aclosing(
                    speak(loaded, [sentence], self.stream_options, self.stream)
                ) as chunks,
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

"""The one seam between every protocol and the models: resolve, transcribe, synthesize.

HTTP routes, the WebSocket sessions and the realtime sessions all call this module; nothing
else in control builds a runner request. A model is resolved once per request or session
(``resolve``: name, manifest, catalog rate) and passed down. The runner's typed client
(``RunnerClient.transcribe``/``synthesize``/``voices``) assigns request ids and checks replies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from litestar.datastructures import UploadFile
from vox_protocol import AudioChunk, SpeechProbabilities, Transcript, Voice

from vox_control import metrics
from vox_control.audio.decode import WHISPER_RATE, AudioDecodeError, AudioLimits, Source
from vox_control.audio.long_audio import LongAudio, open_audio, transcribe_long, window_samples
from vox_control.audio.resample import resample
from vox_control.errors import BadRequest
from vox_control.lazy import lazy_module
from vox_control.scheduler.budget import parse_keep_alive
from vox_control.scheduler.scheduled import LoadedModel
from vox_control.services import Services
from vox_control.store.disk import Manifest
from vox_control.store.families import npz_voices
from vox_control.text.sentences import split_sentences

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

MIN_SPEED, MAX_SPEED = 0.25, 4.0
# Rates assumed until a model is loaded, for catalog entries that do not state one.
DEFAULT_RATES = {"stt": WHISPER_RATE, "tts": 24000}
Kind = Literal["stt", "tts"]


@dataclass(frozen=True)
class ResolvedModel:
    """One request's (or session's) model, looked up once: name, manifest, catalog rate."""

    name: str
    kind: Kind
    manifest: Manifest
    rate: int  # the catalog's rate; a loaded model's own (ModelInfo.sample_rate) wins


def resolve(services: Services, requested: str | None, kind: Kind | None) -> ResolvedModel:
    """Map a requested name (or none, or an OpenAI alias) onto an installed model of ``kind``:
    404 when it is not pulled, 400 when it is of the other kind.

    ``kind`` None takes the model's own kind (a protocol that serves both, like the realtime
    root); the default model is then the default TTS model.
    """
    name = services.model_name(requested, kind or "tts")
    manifest = services.manifest(name, kind)
    if manifest.type not in ("stt", "tts"):  # a VAD model serves sessions, not requests
        raise BadRequest(f"model '{name}' is a {manifest.type} model", param="model")
    found: Kind = "stt" if manifest.type == "stt" else "tts"
    return ResolvedModel(name, found, manifest, manifest.entry.sample_rate or DEFAULT_RATES[found])


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None
    task: str = "transcribe"
    prompt: str | None = None
    temperature: float | None = None
    word_timestamps: bool = False
    vad_filter: bool = False
    beam_size: int | None = None


async def read_upload(upload: object) -> Source:
    """The upload's spooled file (on disk past 1 MB): decoded from there, never read whole."""
    if not isinstance(upload, UploadFile):
        raise BadRequest("a multipart form field 'file' with the audio is required", param="file")
    if not await asyncio.to_thread(upload.file.seek, 0, 2):
        raise AudioDecodeError("the uploaded file is empty")
    upload.file.seek(0)
    return upload.file


async def decode_for(
    services: Services, model: ResolvedModel, data: Source
) -> tuple[np.ndarray | LongAudio, int]:
    """Decode the upload at the model's rate (off the event loop): whole when it fits one
    runner request, else its first window (audio.long_audio)."""
    settings = services.settings
    limits = AudioLimits(max_seconds=settings.max_audio_seconds)
    window = window_samples(model.rate, settings.max_frame_bytes)
    pcm = await asyncio.to_thread(open_audio, data, model.rate, limits, window)
    return pcm, model.rate


def check_keep_alive(value: str | float | None) -> float | None:
    """A request's keep_alive ("5m", "30s", "0", "-1" or seconds) in seconds; None: default."""
    try:
        return parse_keep_alive(value)
    except ValueError as exc:
        raise BadRequest(str(exc), param="keep_alive") from None


async def transcribe_loaded(
    model: LoadedModel, pcm: np.ndarray, rate: int, options: TranscribeOptions
) -> Transcript:
    """The one transcription call: float32 PCM to a model already held (``scheduler.use``).

    The runner never sees a container; audio at another rate than the loaded model's (the
    catalog did not say, or said wrong, or a client sent 8 kHz) is resampled first.
    """
    target = model.info.sample_rate
    if target and target != rate:
        pcm = await asyncio.to_thread(resample, pcm, rate, target)
        rate = target
    started = time.perf_counter()
    transcript = await model.runner.transcribe(
        pcm.astype(np.float32, copy=False).tobytes(),
        rate,
        language=options.language or None,
        task="translate" if options.task == "translate" else "transcribe",
        prompt=options.prompt or None,
        temperature=options.temperature,
        word_timestamps=options.word_timestamps,
        vad_filter=options.vad_filter,
        beam_size=options.beam_size,
    )
    metrics.speech_done("stt", len(pcm) / rate, started)
    return transcript


async def transcribe(
    services: Services,
    model: ResolvedModel,
    pcm: np.ndarray | LongAudio,
    rate: int,
    options: TranscribeOptions,
    keep_alive: float | None = None,
) -> Transcript:
    """Transcribe decoded PCM, holding the model for each runner request."""
    if isinstance(pcm, LongAudio):  # longer than one request carries: window by window
        return await transcribe_long(
            pcm, lambda part: transcribe(services, model, part, rate, options, keep_alive)
        )
    async with services.scheduler.use(model.name, keep_alive=keep_alive) as loaded:
        return await transcribe_loaded(loaded, pcm, rate, options)


async def detect_speech(
    model: LoadedModel,
    pcm: np.ndarray,
    rate: int,
    stream: str,
    *,
    reset: bool = False,
    end: bool = False,
) -> SpeechProbabilities:
    """The one VAD call: speech probabilities for the next PCM of ``stream`` on a VAD model
    already held (``scheduler.use``); the runner keeps each stream's state between calls."""
    target = model.info.sample_rate
    if target and target != rate and len(pcm):
        pcm = await asyncio.to_thread(resample, pcm, rate, target)
        rate = target
    return await model.runner.vad(
        pcm.astype(np.float32, copy=False).tobytes(), rate, stream=stream, reset=reset, end=end
    )


async def list_voices(services: Services, name: str) -> tuple[list[Voice], str | None]:
    """A TTS model's voices: from its catalog entry when it lists them (no runner, not even a
    pull needed), else from its runner's ListVoices."""
    entry = services.registry.resolve(name)
    if entry.type != "tts":
        raise BadRequest(f"model '{name}' is not a text-to-speech model", param="model")
    if entry.voices:
        return [Voice(id=v, name=v) for v in entry.voices], entry.default_voice
    services.manifest(entry.name, "tts")
    from_file = npz_voices(services.store.path(entry.name))  # kokoro: no runner needed
    if from_file:
        return [Voice(id=v, name=v) for v in from_file], entry.default_voice or from_file[0]
    async with services.scheduler.use(entry.name) as model:
        reply = await model.runner.voices()
    return list(reply.voices), reply.default


def check_speed(speed: float) -> float:
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise BadRequest(f"'speed' must be between {MIN_SPEED} and {MAX_SPEED}", param="speed")
    return speed


@dataclass(frozen=True)
class SynthesisOptions:
    voice: str | None = None  # already mapped (Services.voice_for): what the runner gets
    speed: float = 1.0
    language: str | None = None


_stream_keys = itertools.count(1)
_End = None  # a sentence's queue ends with this


def stream_key() -> str:
    """A new key for one client's speech (protocol ``Synthesize.stream``): a session that
    speaks sentence by sentence passes one to every ``speak``, so the runner ranks its later
    sentences as one stream's."""
    return f"s{next(_stream_keys)}"


async def _sentence(
    model: LoadedModel,
    sentence: str,
    options: SynthesisOptions,
    stream: str,
    out: asyncio.Queue[AudioChunk | None],
) -> None:
    """One sentence's runner request, its chunks into ``out`` as they come."""
    started, samples, rate = time.perf_counter(), 0, 1
    chunks = model.runner.synthesize(
        sentence,
        voice=options.voice,
        speed=options.speed,
        language=options.language,
        stream=stream,
    )
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                samples, rate = samples + len(chunk.audio) // 2, chunk.sample_rate  # pcm16
                out.put_nowait(chunk)
    finally:
        out.put_nowait(_End)
    metrics.speech_done("tts", samples / rate, started)


async def speak(
    model: LoadedModel,
    sentences: Iterable[str],
    options: SynthesisOptions,
    stream: str | None = None,
) -> AsyncGenerator[AudioChunk, None]:
    """THE per-sentence synthesis loop: one runner request per sentence, in order.

    Sentences come from text.sentences (runners speak what they are given). The next
    sentence's request goes out while this one is made and sent, so the runner has it waiting
    and never idles between two sentences of one stream; all of them carry one stream key
    (``stream``, else a new one), which the runner ranks them by. Closing this generator early,
    or cancelling the task iterating it, cancels both requests (the runner gets a Cancel each).
    """
    stream = stream or stream_key()
    queued = iter(sentences)
    ahead: collections.deque[tuple[asyncio.Task[None], asyncio.Queue[AudioChunk | None]]]
    ahead = collections.deque()

    def send_next() -> None:
        sentence = next(queued, None)
        if sentence is not None:
            out: asyncio.Queue[AudioChunk | None] = asyncio.Queue()
            task = asyncio.create_task(_sentence(model, sentence, options, stream, out))
            ahead.append((task, out))

    try:
        send_next()
        while ahead:
            task, out = ahead[0]
            if len(ahead) == 1:
                send_next()
            while (chunk := await out.get()) is not _End:
                yield chunk
            await task  # its error, if it failed
            ahead.popleft()
    finally:
        for task, _ in ahead:
            task.cancel()
        await asyncio.gather(*(task for task, _ in ahead), return_exceptions=True)


async def sentences_of(text: str, language: str | None = None) -> list[str]:
    """A whole request's sentences; split off the event loop (up to 100k characters)."""
    return await asyncio.to_thread(split_sentences, text, language)


async def open_synthesis(
    services: Services,
    model: ResolvedModel,
    text: str,
    voice: str | None,
    speed: float,
    language: str | None = None,
    keep_alive: float | None = None,
) -> tuple[int, AsyncIterator[tuple[bytes, int]]]:
    """Start synthesis and wait for its first chunk, so errors surface as a proper status.

    Returns the model's sample rate and an iterator of (pcm16 bytes, rate) chunks that holds
    the model's reference until it is exhausted or closed (a client disconnect closes it, and
    closing sends the runner a Cancel).
    """
    sentences = await sentences_of(text, language)
    stack = contextlib.AsyncExitStack()
    try:
        loaded = await stack.enter_async_context(
            services.scheduler.use(model.name, keep_alive=keep_alive)
        )
        known = [v.id for v in loaded.info.voices]
        options = SynthesisOptions(
            services.voice_for(model.manifest, voice, known), speed, language or None
        )
        chunks = await stack.enter_async_context(
            contextlib.aclosing(speak(loaded, sentences, options))
        )
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            raise BadRequest("the text produced no speech", param="input") from None
    except BaseException:
        await stack.aclose()
        raise

    async def audio() -> AsyncIterator[tuple[bytes, int]]:
        async with stack:
            yield first.audio, first.sample_rate
            async for chunk in chunks:
                yield chunk.audio, chunk.sample_rate

    return first.sample_rate, audio()

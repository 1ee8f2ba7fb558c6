"""Transcription and synthesis on top of the scheduler, shared by the native and OpenAI routes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from litestar.datastructures import UploadFile
from vox_protocol import ListVoices, Synthesize, Transcribe, Transcript, Voice, Voices

from vox_control.audio.decode import WHISPER_RATE, AudioDecodeError, AudioLimits, Source
from vox_control.audio.long_audio import LongAudio, open_audio, transcribe_long, window_samples
from vox_control.audio.resample import resample
from vox_control.errors import BadRequest, UpstreamFailed
from vox_control.scheduler.budget import parse_keep_alive
from vox_control.services import Services
from vox_control.store.families import npz_voices

MIN_SPEED, MAX_SPEED = 0.25, 4.0


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
    services: Services, name: str, data: Source
) -> tuple[np.ndarray | LongAudio, int]:
    """Check the model, then decode the upload at the model's rate (off the event loop):
    whole when it fits one runner request, else its first window (audio.long_audio)."""
    manifest = services.manifest(name, "stt")  # 404/400 before any decoding work
    rate = manifest.entry.sample_rate or WHISPER_RATE
    settings = services.settings
    limits = AudioLimits(max_seconds=settings.max_audio_seconds)
    window = window_samples(rate, settings.max_frame_bytes)
    pcm = await asyncio.to_thread(open_audio, data, rate, limits, window)
    return pcm, rate


def check_keep_alive(value: str | float | None) -> float | None:
    """A request's keep_alive ("5m", "30s", "0", "-1" or seconds) in seconds; None: default."""
    try:
        return parse_keep_alive(value)
    except ValueError as exc:
        raise BadRequest(str(exc), param="keep_alive") from None


async def run_transcription(
    services: Services,
    name: str,
    pcm: np.ndarray | LongAudio,
    rate: int,
    options: TranscribeOptions,
    keep_alive: float | None = None,
) -> Transcript:
    """Send decoded PCM to the model's runner; the runner never sees a container."""
    if isinstance(pcm, LongAudio):  # longer than one request carries: window by window
        return await transcribe_long(
            pcm, lambda part: run_transcription(services, name, part, rate, options, keep_alive)
        )
    async with services.scheduler.use(name, keep_alive=keep_alive) as model:
        if model.info.sample_rate and model.info.sample_rate != rate:
            # The catalog did not say (or said wrong): one more pass, to the rate the model has.
            resampled = await asyncio.to_thread(resample, pcm, rate, model.info.sample_rate)
            pcm, rate = resampled, model.info.sample_rate
        runner, started = model.runner, time.perf_counter()
        reply = await runner.request(
            Transcribe(
                id=runner.next_id(),
                audio=pcm.tobytes(),
                sample_rate=rate,
                language=options.language or None,
                task="translate" if options.task == "translate" else "transcribe",
                prompt=options.prompt or None,
                temperature=options.temperature,
                word_timestamps=options.word_timestamps,
                vad_filter=options.vad_filter,
                beam_size=options.beam_size,
            )
        )
    if not isinstance(reply, Transcript):
        raise UpstreamFailed(f"unexpected reply from the runner: {type(reply).__name__}")
    services.metrics.speech_done("stt", name, len(pcm) / rate, started)
    return reply


async def transcribe(
    services: Services,
    name: str,
    data: Source,
    options: TranscribeOptions,
    keep_alive: float | None = None,
) -> Transcript:
    pcm, rate = await decode_for(services, name, data)
    return await run_transcription(services, name, pcm, rate, options, keep_alive)


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
        runner = model.runner
        reply = await runner.request(ListVoices(id=runner.next_id()))
    if not isinstance(reply, Voices):
        raise UpstreamFailed(f"unexpected reply from the runner: {type(reply).__name__}")
    return list(reply.voices), reply.default


def check_speed(speed: float) -> float:
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise BadRequest(f"'speed' must be between {MIN_SPEED} and {MAX_SPEED}", param="speed")
    return speed


async def open_synthesis(
    services: Services,
    name: str,
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
    manifest = services.manifest(name, "tts")
    stack = contextlib.AsyncExitStack()
    try:
        model = await stack.enter_async_context(services.scheduler.use(name, keep_alive=keep_alive))
        runner, started = model.runner, time.perf_counter()
        request = Synthesize(
            id=runner.next_id(),
            text=text,
            voice=services.voice_for(manifest, voice, [v.id for v in model.info.voices]),
            speed=speed,
            language=language or None,
        )
        chunks = runner.stream(request)
        stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            raise BadRequest("the text produced no speech", param="input") from None
    except BaseException:
        await stack.aclose()
        raise

    async def audio() -> AsyncIterator[tuple[bytes, int]]:
        samples = len(first.audio) // 2  # pcm16
        async with stack:
            yield first.audio, first.sample_rate
            async for chunk in chunks:
                samples += len(chunk.audio) // 2
                yield chunk.audio, chunk.sample_rate
        services.metrics.speech_done("tts", name, samples / first.sample_rate, started)

    return first.sample_rate, audio()

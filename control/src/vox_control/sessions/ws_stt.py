"""WS /v1/audio/transcriptions/stream: long recordings in overlapping windows, stitched by word."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from litestar import WebSocket, websocket
from vox_protocol import Transcript

from vox_control.audio.decode import FRAME_LIMITS, WHISPER_RATE, AudioDecodeError, decode_audio
from vox_control.audio.resample import Resampler
from vox_control.inference import ResolvedModel, TranscribeOptions, transcribe
from vox_control.lazy import lazy_module
from vox_control.services import Services
from vox_control.sessions.channel import (
    BAD_CONFIG,
    NORMAL,
    POLICY,
    TOO_LARGE,
    UNSUPPORTED_DATA,
    Channel,
    StreamError,
    model_error,
    parse_message,
)
from vox_control.sessions.merge import SEAM_NEAR, Stitcher, Voicing, WindowTranscript
from vox_control.sessions.skeleton import StreamSession
from vox_control.sessions.vad_stream import MIN_PAUSE, VAD_MODEL, PauseListener, vad_installed
from vox_control.sessions.voiced import speech_level, voiced_spans
from vox_control.sessions.windows import Pauses, Window, WindowPlanner
from vox_control.validation import check_language

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

log = logging.getLogger("vox.streaming.stt")

InputFormat = Literal["pcm16", "wav", "flac", "mp3", "ogg", "webm"]
# Windows waiting for the runner; past this the session stops reading from the socket, so a
# client sending faster than real time is slowed by TCP instead of filling our memory.
_QUEUED_WINDOWS = 2
# Audio on each side of a suspect seam's cut transcribed again: its seams with the two
# windows then have 1.5 s of context on each side (with a 1 s overlap) instead of 0.5 s.
SEAM_REACH = int(2.5 * WHISPER_RATE)


class SttConfig(msgspec.Struct, forbid_unknown_fields=False):
    type: str
    model: str | None = None
    input_format: InputFormat = "pcm16"
    sample_rate: int = WHISPER_RATE
    language: str | None = None
    word_timestamps: bool = False
    chunk_ms: int = 30_000
    overlap_ms: int = 1_000
    partial: bool = True  # extension: a `partial` event with the text so far per window
    prompt: str | None = None
    beam_size: int | None = None
    vad: bool = False  # extension: end windows in pauses the VAD model hears


def check_config(config: SttConfig) -> None:
    """Value checks msgspec's types cannot express; each names its field."""
    if config.input_format == "pcm16" and not 8000 <= config.sample_rate <= 192_000:
        raise StreamError(
            "invalid_config", "sample_rate must be 8000..192000", BAD_CONFIG, param="sample_rate"
        )
    if not 1_000 <= config.chunk_ms <= 600_000:
        raise StreamError(
            "invalid_config", "chunk_ms must be 1000..600000", BAD_CONFIG, param="chunk_ms"
        )
    if not 0 <= config.overlap_ms <= config.chunk_ms // 2:
        raise StreamError(
            "invalid_config",
            "overlap_ms must be between 0 and half of chunk_ms",
            BAD_CONFIG,
            param="overlap_ms",
        )
    if config.beam_size is not None and not 1 <= config.beam_size <= 20:
        raise StreamError(
            "invalid_config", "beam_size must be 1..20", BAD_CONFIG, param="beam_size"
        )


@dataclass
class _Audio:
    """The session's audio at 16 kHz float32, kept only from the first sample still needed."""

    origin: int = 0  # session sample index of buffer[0]
    pieces: list[np.ndarray] = field(default_factory=list)
    total: int = 0
    carry: bytes = b""  # an odd trailing byte of a pcm16 frame

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self.pieces.append(samples)
            self.total += samples.size

    def slice(self, window: Window) -> bytes:
        buffer = np.concatenate(self.pieces) if len(self.pieces) != 1 else self.pieces[0]
        self.pieces = [buffer]
        return buffer[window.start - self.origin : window.end - self.origin].tobytes()

    def drop_before(self, sample: int) -> None:
        if sample <= self.origin or not self.pieces:
            return
        buffer = np.concatenate(self.pieces)
        cut = min(sample - self.origin, buffer.size)
        self.pieces = [buffer[cut:].copy()]
        self.origin += cut


class SttSession(StreamSession):
    kind = "stt"

    async def serve(self) -> None:
        config = await self.receive_config(SttConfig)
        check_config(config)
        await self._stream(config, await self._open(config))

    async def _open(self, config: SttConfig) -> ResolvedModel:
        if config.vad and not vad_installed(self.services):
            raise StreamError(
                "invalid_config",
                f"vad needs the VAD model: run `vox pull {VAD_MODEL}`",
                BAD_CONFIG,
                param="vad",
            )
        model, info = await self.open_model(
            # The catalog's languages refuse a bad language before the model is loaded.
            config.model,
            lambda m: check_language(config.language, m.manifest.entry.languages),
        )
        name = model.name
        try:
            check_language(config.language, info.languages)
        except Exception as exc:
            raise model_error(exc) from None
        await self.channel.send_event(
            {
                "type": "ready",
                "model": name,
                "input_format": config.input_format,
                "sample_rate": config.sample_rate if config.input_format == "pcm16" else None,
                "chunk_ms": config.chunk_ms,
                "overlap_ms": config.overlap_ms,
                "vad": config.vad,
            }
        )
        return model

    async def _stream(self, config: SttConfig, model: ResolvedModel) -> None:
        started = time.perf_counter()
        audio = _Audio()
        pauses = Pauses(512, MIN_PAUSE) if config.vad else None  # Silero's frames: 32 ms
        planner = WindowPlanner(
            config.chunk_ms * WHISPER_RATE // 1000, config.overlap_ms * WHISPER_RATE // 1000, pauses
        )
        queue: asyncio.Queue[tuple[Window, bytes] | None] = asyncio.Queue(_QUEUED_WINDOWS)
        stitcher = Stitcher()
        state: dict[str, Any] = {"language": config.language}
        worker = asyncio.create_task(self._work(config, model, queue, stitcher, audio, state))
        receiver = asyncio.create_task(self._receive(config, audio, planner, queue))
        try:
            # The receiver never returns: after `end` it watches for a disconnect, which must
            # cancel the windows still being transcribed. So the worker's end is the signal.
            done, _ = await asyncio.wait({worker, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raise the first failure (the other task is cancelled below)
        finally:
            for task in (worker, receiver):
                task.cancel()
            # Cancelling the worker cancels its runner request: the runner gets a Cancel.
            await asyncio.gather(worker, receiver, return_exceptions=True)
        segments = stitcher.segments()
        body = [msgspec.to_builtins(s) for s in segments]
        if not config.word_timestamps:
            for segment in body:
                segment.pop("words", None)
        await self.channel.send_event(
            {
                "type": "done",
                "model": model.name,
                "text": "".join(s.text for s in segments).strip(),
                "language": state["language"],
                "duration_ms": round(audio.total * 1000 / WHISPER_RATE),
                "processing_ms": round((time.perf_counter() - started) * 1000),
                "chunks_completed": stitcher.windows,
                "segments": body,
            }
        )
        await self.channel.close(NORMAL)

    async def _receive(
        self,
        config: SttConfig,
        audio: _Audio,
        planner: WindowPlanner,
        queue: asyncio.Queue[tuple[Window, bytes] | None],
    ) -> None:
        """Read frames until `end`, queueing each window as soon as its audio is complete."""
        limit = int(self.settings.stream_max_audio_seconds * WHISPER_RATE)
        resampler = _Resampler(config.sample_rate) if config.input_format == "pcm16" else None
        # With `vad`: the audio goes to the VAD as it comes; on an error the runner's cap on
        # streams forgets this one.
        listener = PauseListener(self.services, planner.pauses) if planner.pauses else None
        while True:
            frame = await self.channel.receive()
            if isinstance(frame, str):
                message = parse_message(frame)
                kind = message["type"]
                if kind == "end":
                    break
                if kind == "config":
                    raise StreamError(
                        "duplicate_config", "the session is already configured", POLICY
                    )
                raise StreamError(
                    "unknown_type", f"unknown message type {kind!r} (expected end)", POLICY
                )
            if resampler is not None:
                samples = resampler.push(audio, frame)
            else:
                samples = await asyncio.to_thread(_decode, frame, config.input_format)
            if audio.total + samples.size > limit:
                raise StreamError(
                    "session_too_large",
                    f"the session's audio exceeds {self.settings.stream_max_audio_seconds:g} s "
                    "(VOX_STREAM_MAX_AUDIO_SECONDS)",
                    TOO_LARGE,
                )
            audio.append(samples)
            if listener is not None:
                await listener.hear(samples)
            for window in planner.ready(audio.total):
                await self.channel.meanwhile(queue.put((window, audio.slice(window))))
                audio.drop_before(planner.keep_from())
        if resampler is not None:
            audio.append(resampler.flush())
        for window in planner.finish(audio.total):
            await self.channel.meanwhile(queue.put((window, audio.slice(window))))
        await self.channel.meanwhile(queue.put(None))
        if listener is not None:
            await listener.end()
        await self.channel.receive()  # returns only if the client breaks the protocol
        raise StreamError("after_end", "no message may follow end", POLICY)

    async def _work(
        self,
        config: SttConfig,
        model: ResolvedModel,
        queue: asyncio.Queue[tuple[Window, bytes] | None],
        stitcher: Stitcher,
        audio: _Audio,
        state: dict[str, Any],
    ) -> None:
        """Transcribe queued windows one by one (in order: the stitch needs them so)."""
        previous: tuple[Window, bytes] | None = None
        while (item := await queue.get()) is not None:
            window, pcm = item
            reply = await self._transcribe(config, model, pcm)
            state["language"] = state["language"] or reply.language
            transcript = WindowTranscript(
                window.start / WHISPER_RATE, window.end / WHISPER_RATE, reply.segments
            )
            cut = round(stitcher.cut(transcript) * WHISPER_RATE)
            # A window after a pause shares no word with the previous one: no seam to check.
            voicing = None
            if previous is not None and not window.after_pause:
                voicing = await asyncio.to_thread(_voiced_near, previous, item, cut)
                if stitcher.suspect(transcript, voicing):
                    extra = await self._seam_again(config, model, previous, item, cut)
                    if extra is not None:
                        stitcher.add(extra, extra=True, voicing=voicing)
            stitcher.add(transcript, voicing=voicing)
            previous = item
            await self.channel.send_event(
                {
                    "type": "progress",
                    "uploaded_ms": round(audio.total * 1000 / WHISPER_RATE),
                    "processed_ms": round(window.end * 1000 / WHISPER_RATE),
                    "chunks_completed": stitcher.windows,
                }
            )
            if config.partial:
                await self.channel.send_event(
                    {
                        "type": "partial",
                        "text": stitcher.text(),
                        "processed_ms": round(window.end * 1000 / WHISPER_RATE),
                    }
                )

    async def _transcribe(self, config: SttConfig, model: ResolvedModel, pcm: bytes) -> Transcript:
        options = TranscribeOptions(
            language=config.language,
            prompt=config.prompt,
            word_timestamps=True,  # the stitch needs them, asked or not
            beam_size=config.beam_size,
        )
        samples = np.frombuffer(pcm, dtype=np.float32)
        try:
            # Held per window: between windows an idle session pins no runner.
            return await transcribe(self.services, model, samples, WHISPER_RATE, options)
        except Exception as exc:
            raise model_error(exc) from None

    async def _seam_again(
        self,
        config: SttConfig,
        model: ResolvedModel,
        previous: tuple[Window, bytes],
        current: tuple[Window, bytes],
        cut: int,
    ) -> WindowTranscript | None:
        """Transcribe the audio around a suspect seam once more, as a clip of its own.

        Whisper may lose a phrase cut off at one window's end and at the next one's start;
        in a clip that has it in the middle it is heard. The clip stays within the later
        half of the earlier window and the earlier half of the later one, so its seams with
        them lie well inside both.
        """
        a, b = previous[0], current[0]
        start = max(cut - SEAM_REACH, (a.start + a.end) // 2)
        end = min(cut + SEAM_REACH, (b.start + b.end) // 2)
        if end - start < WHISPER_RATE:
            return None
        reply = await self._transcribe(config, model, _span(previous, current, start, end))
        log.info("seam at %.1f s: suspect, transcribed again", cut / WHISPER_RATE)
        return WindowTranscript(start / WHISPER_RATE, end / WHISPER_RATE, reply.segments)


def _span(
    previous: tuple[Window, bytes], current: tuple[Window, bytes], start: int, end: int
) -> bytes:
    """Samples ``[start, end)`` of the session from two neighbouring windows' audio."""
    (a, a_pcm), (b, b_pcm) = previous, current
    start, end = max(start, a.start), min(end, b.end)
    # float32 samples: 4 bytes each; the earlier window's audio, then the later one's.
    out = a_pcm[(start - a.start) * 4 : (min(end, a.end) - a.start) * 4]
    if end > a.end:
        out += b_pcm[(max(start, a.end) - b.start) * 4 : (end - b.start) * 4]
    return out


def _voiced_near(
    previous: tuple[Window, bytes], current: tuple[Window, bytes], cut: int
) -> Voicing:
    """Where the audio within SEAM_NEAR of the cut has speech, at the earlier window's level."""
    near = round(SEAM_NEAR * WHISPER_RATE)
    start = max(cut - near, previous[0].start)
    samples = np.frombuffer(_span(previous, current, start, cut + near), dtype=np.float32)
    level = speech_level(np.frombuffer(previous[1], dtype=np.float32), WHISPER_RATE)
    spans = voiced_spans(samples, WHISPER_RATE, start / WHISPER_RATE, level)
    return Voicing(start / WHISPER_RATE, (start + samples.size) / WHISPER_RATE, spans)


class _Resampler:
    """pcm16 frames at the client's rate -> float32 at 16 kHz, across frame boundaries."""

    def __init__(self, rate: int) -> None:
        self._resampler = Resampler(rate, WHISPER_RATE, "float32")

    def push(self, audio: _Audio, frame: bytes) -> np.ndarray:
        data = audio.carry + frame
        whole = len(data) - len(data) % 2
        audio.carry = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
        return self._resampler.push(samples)

    def flush(self) -> np.ndarray:
        return self._resampler.push(np.zeros(0, dtype=np.float32), last=True)


def _decode(frame: bytes, input_format: str) -> np.ndarray:
    try:
        return decode_audio(frame, WHISPER_RATE, FRAME_LIMITS)
    except AudioDecodeError as exc:
        raise StreamError(
            "invalid_audio",
            f"a binary frame is not a self-contained {input_format} blob: {exc}",
            UNSUPPORTED_DATA,
        ) from None


@websocket("/v1/audio/transcriptions/stream")
async def transcription_stream(socket: WebSocket[Any, Any, Any], services: Services) -> None:
    """Long-form transcription: config, binary audio frames, end -> progress..., done."""
    await socket.accept()
    await SttSession(Channel(socket), services).run()

"""Audio out: streaming encoders (wav, pcm, mp3, opus, aac, flac) fed one sentence at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from vox_control.audio.decode import wav_header
from vox_control.audio.resample import ToRate
from vox_control.errors import BadRequest, Unprocessable
from vox_control.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

if TYPE_CHECKING:
    from av.audio.stream import AudioStream

OPENAI_PCM_RATE = 24000
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",  # Ogg-encapsulated Opus, as OpenAI sends it
    "aac": "audio/aac",  # ADTS frames: streamable, plays in browsers and ffmpeg
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
MIN_RATE, MAX_RATE = 8000, 192000

# format -> (FFmpeg muxer, encoder, bit rate, the rates the encoder accepts or None for any).
_CODECS: dict[str, tuple[str, str, int | None, tuple[int, ...] | None]] = {
    "mp3": (
        "mp3",
        "libmp3lame",
        64_000,
        (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
    ),
    "opus": ("ogg", "libopus", 32_000, (8000, 12000, 16000, 24000, 48000)),
    "aac": (
        "adts",
        "aac",
        64_000,
        (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000),
    ),
    "flac": ("flac", "flac", None, None),
}


def output_rate(fmt: str, model_rate: int, requested: int | None) -> int:
    """The body's sample rate: ``requested`` if the format can carry it, else a sensible default.

    pcm is 24 kHz as OpenAI defines it; opus is 48 kHz (its native rate); every other format
    keeps the model's rate when the codec supports it (no resampling), else the next higher one.
    """
    if fmt not in SPEECH_FORMATS:
        raise BadRequest(
            f"response_format '{fmt}' is not supported; use one of {', '.join(SPEECH_FORMATS)}",
            param="response_format",
        )
    allowed = _CODECS[fmt][3] if fmt in _CODECS else None
    if requested is not None:
        if not MIN_RATE <= requested <= MAX_RATE:
            raise BadRequest(
                f"'sample_rate' must be between {MIN_RATE} and {MAX_RATE}, not {requested}",
                param="sample_rate",
            )
        if allowed is not None and requested not in allowed:
            raise Unprocessable(
                f"{fmt} cannot carry {requested} Hz; use one of "
                f"{', '.join(str(r) for r in allowed)}",
                param="sample_rate",
            )
        return requested
    if fmt == "pcm":
        return OPENAI_PCM_RATE
    if fmt == "opus":
        return 48000
    if allowed is None or model_rate in allowed:
        return model_rate
    return min((r for r in allowed if r >= model_rate), default=max(allowed))


class Encoder(Protocol):
    """The one encoder interface (HTTP bodies and WebSocket streams): mono int16 PCM in at
    any rate, bytes in the output format at ``sample_rate`` out, as soon as they are ready."""

    sample_rate: int

    def push(self, pcm: bytes, rate: int) -> bytes:
        """Encode PCM16 at ``rate``; returns whatever output is complete."""
        ...

    def finish(self) -> bytes:
        """Flush everything still buffered; the encoder is unusable afterwards."""
        ...

    def close(self) -> None:
        """Release the codec without writing a trailer (the client went away)."""
        ...


class RawEncoder:
    """wav (header, then PCM16) or bare pcm."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._resampler = ToRate(sample_rate)
        self._header = wav_header(sample_rate) if fmt == "wav" else b""

    def push(self, pcm: bytes, rate: int) -> bytes:
        data = self._header + self._resampler.push(pcm, rate)
        self._header = b""
        return data

    def finish(self) -> bytes:
        return self._header + self._resampler.flush()

    def close(self) -> None:
        """Nothing to release."""


class _Sink:
    """A write-only file for PyAV: having no ``seek``, muxers write streamable output."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class CodecEncoder:
    """mp3, opus (Ogg), aac (ADTS) or flac through PyAV; each push returns what was muxed.

    ``flush_packets`` makes the muxer write every packet out at once, and short Ogg pages let
    opus leave too, so a sentence's audio goes to the client as soon as it is encoded (less the
    encoder's own lookahead, which leaves with the next sentence or at the end). Ogg output is
    always whole pages: ``page_us`` sets how much audio one page holds (HTTP: one 20 ms Opus
    frame; the WebSocket stream: 100 ms, see ``audio.stream_encode``).
    """

    def __init__(self, fmt: str, sample_rate: int, page_us: int = 20_000) -> None:
        import av  # FFmpeg's libraries (~18 MB) load with the first audio encoded, not at start
        from av.audio.stream import AudioStream

        muxer, codec, bit_rate, _ = _CODECS[fmt]
        self.sample_rate = sample_rate
        self._resampler = ToRate(sample_rate)
        self._sink = _Sink()
        options = {"flush_packets": "1"}
        if muxer == "ogg":
            options["page_duration"] = str(page_us)  # microseconds of audio per page
        self._container = av.open(self._sink, "w", format=muxer, container_options=options)
        stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
        assert isinstance(stream, AudioStream)
        self._stream: AudioStream = stream
        if bit_rate:
            self._stream.bit_rate = bit_rate
        self._pts = 0

    def push(self, pcm: bytes, rate: int) -> bytes:
        self._encode(self._resampler.push(pcm, rate))
        return self._sink.take()

    def finish(self) -> bytes:
        self._encode(self._resampler.flush())
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()

    def close(self) -> None:
        self._container.close()

    def _encode(self, pcm: bytes) -> None:
        if not pcm:
            return
        from av import AudioFrame

        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


def make_encoder(fmt: str, sample_rate: int, page_us: int = 20_000) -> Encoder:
    """The encoder for ``fmt`` writing at ``sample_rate`` (see ``output_rate``)."""
    if fmt in ("wav", "pcm"):
        return RawEncoder(fmt, sample_rate)
    if fmt in _CODECS:
        return CodecEncoder(fmt, sample_rate, page_us)
    raise BadRequest(f"response_format '{fmt}' is not supported", param="response_format")


def encode_all(pcm: bytes, in_rate: int, fmt: str, out_rate: int | None = None) -> bytes:
    """Encode one whole PCM16 mono buffer (tests and benchmarks)."""
    encoder = make_encoder(fmt, out_rate or output_rate(fmt, in_rate, None))
    return encoder.push(pcm, in_rate) + encoder.finish()


async def encode_stream(
    chunks: AsyncIterator[tuple[bytes, int]], response_format: str, out_rate: int | None
) -> AsyncIterator[bytes]:
    """Turn (pcm16 bytes, rate) chunks into a byte stream in ``response_format``.

    Codec work runs in a worker thread (a sentence of mp3 takes milliseconds, which the event
    loop must not spend); each sentence's bytes are yielded as soon as they are encoded.
    """
    encoder: Encoder | None = None
    finished = False
    try:
        async for pcm, rate in chunks:
            first = encoder is None
            if encoder is None:
                encoder = make_encoder(
                    response_format, out_rate or output_rate(response_format, rate, None)
                )
            if isinstance(encoder, CodecEncoder):
                # The first bytes leave after encoding a fifth of a second, not a whole
                # sentence (mp3/opus of a 5 s sentence is ~60 ms of codec work).
                lead = (rate // 5) * 2 if first else 0
                for piece in (pcm[:lead], pcm[lead:]) if 0 < lead < len(pcm) else (pcm,):
                    data = await asyncio.to_thread(encoder.push, piece, rate)
                    if data:
                        yield data
                continue
            data = encoder.push(pcm, rate)
            if data:
                yield data
        if encoder is not None:
            finished = True
            tail = await asyncio.to_thread(encoder.finish)
            if tail:
                yield tail
    finally:
        if encoder is not None and not finished:
            encoder.close()

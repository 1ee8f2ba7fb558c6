"""Audio in and out: decode any upload once with PyAV, and stream WAV or raw PCM back."""

from __future__ import annotations

import io
import struct
from collections.abc import AsyncIterator

import av
import numpy as np

WHISPER_RATE = 16000
OPENAI_PCM_RATE = 24000


class AudioDecodeError(ValueError):
    """The upload is empty, not audio, or corrupt."""


def decode_audio(data: bytes, sample_rate: int = WHISPER_RATE) -> np.ndarray:
    """Decode any container/codec PyAV reads into mono float32 PCM at ``sample_rate``.

    Mirrors faster-whisper's own decode (s16 mono through libswresample, then scaled), so a
    transcript through the server matches one made in process on the same file.
    """
    if not data:
        raise AudioDecodeError("the uploaded file is empty")
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError) as exc:
        raise AudioDecodeError(f"could not read the upload as audio: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("the upload has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        pieces: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as exc:
            if not pieces:
                raise AudioDecodeError(f"could not decode the audio: {exc}") from exc
            # A truncated tail is common (a cut-off recording): keep what decoded.
    if not pieces:
        raise AudioDecodeError("the upload contains no audio samples")
    pcm = np.concatenate(pieces).astype(np.float32) / 32768.0
    return pcm


def wav_header(sample_rate: int, data_bytes: int | None = None, channels: int = 1) -> bytes:
    """A 44-byte PCM16 WAV header; ``None`` size marks a stream of unknown length.

    Streams use 0xFFFFFFFF for the RIFF and data sizes, the convention that ffmpeg, browsers,
    libsndfile and Python's wave module accept for WAV of unknown length.
    """
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
        + b"data"
        + struct.pack("<I", size)
    )


class PCMResampler:
    """Streaming int16 mono resampler (soxr), for outputs at a fixed rate like OpenAI's pcm."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None
        if in_rate != out_rate:
            import soxr

            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")

    def push(self, pcm: bytes, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2")
        out = self._stream.resample_chunk(samples, last=last)
        return np.asarray(out, dtype="<i2").tobytes()


async def encode_stream(
    chunks: AsyncIterator[tuple[bytes, int]], response_format: str, out_rate: int | None
) -> AsyncIterator[bytes]:
    """Turn (pcm16 bytes, rate) chunks into a byte stream in ``response_format`` (wav, pcm)."""
    resampler: PCMResampler | None = None
    async for pcm, rate in chunks:
        if resampler is None:
            target = out_rate or rate
            resampler = PCMResampler(rate, target)
            if response_format == "wav":
                yield wav_header(target)
        data = resampler.push(pcm)
        if data:
            yield data
    if resampler is not None:
        tail = resampler.push(b"", last=True)
        if tail:
            yield tail

"""Audio in (decode any upload once with PyAV, resample with soxr) and PCM16 helpers for out."""

from __future__ import annotations

import io
import struct
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soxr

from vox_control.errors import BadRequest

WHISPER_RATE = 16000
# Upload containers and codecs this decoder is tested with (any format FFmpeg reads works).
INPUT_FORMATS = ("wav", "flac", "mp3", "ogg/opus", "ogg/vorbis", "webm/opus", "m4a/aac", "aac")


class AudioDecodeError(BadRequest, ValueError):
    """The upload is empty, not audio, or corrupt."""

    code = "invalid_audio"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="file")


def decode_audio(data: bytes, sample_rate: int = WHISPER_RATE) -> npt.NDArray[np.float32]:
    """Decode any container/codec PyAV reads into mono float32 PCM at ``sample_rate``.

    libswresample only converts the sample format and downmixes (at the source rate); the rate
    change is one soxr pass over the whole signal, which is both more accurate than a chunked
    resampler and faster (one call, no per-frame state).
    """
    if not data:
        raise AudioDecodeError("the uploaded file is empty")
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(f"could not read the upload as audio: {_reason(exc)}") from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("the upload has no audio stream")
        stream = container.streams.audio[0]
        source_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        if source_rate <= 0:
            raise AudioDecodeError("the audio stream has no sample rate")
        mixer = av.AudioResampler(format="flt", layout="mono", rate=source_rate)
        pieces: list[npt.NDArray[Any]] = []
        try:
            for frame in container.decode(stream):
                for out in mixer.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
            for out in mixer.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as exc:
            if not pieces:
                raise AudioDecodeError(f"could not decode the audio: {_reason(exc)}") from exc
            # A truncated tail is common (a cut-off recording): keep what decoded.
    if not pieces:
        raise AudioDecodeError("the upload contains no audio samples")
    pcm = np.concatenate(pieces).astype(np.float32, copy=False)
    if source_rate != sample_rate:
        pcm = soxr.resample(pcm, source_rate, sample_rate, quality="HQ").astype(
            np.float32, copy=False
        )
    return pcm


def _reason(exc: Exception) -> str:
    # FFmpeg errors carry "[Errno 1094995529] Invalid data found when processing input: '<none>'".
    return str(getattr(exc, "strerror", None) or exc)


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
    """Streaming int16 mono resampler (soxr): state carries across chunks, so no seams."""

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

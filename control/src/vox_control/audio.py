"""Audio in: decode any upload once with PyAV, downmix, and resample it with soxr in one pass."""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soxr

WHISPER_RATE = 16000
# Upload containers and codecs this decoder is tested with (any format FFmpeg reads works).
INPUT_FORMATS = ("wav", "flac", "mp3", "ogg/opus", "ogg/vorbis", "webm/opus", "m4a/aac", "aac")


class AudioDecodeError(ValueError):
    """The upload is empty, not audio, or corrupt."""


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

"""Audio in: decode any upload (mono PCM16 WAV with the standard library, the rest with PyAV),
bounded before any work, and PCM16 helpers for out.

An upload's header can claim anything: a 10 KB WAV that says "1 Hz" is 10,000 seconds, which
a 16 kHz resample turns into 1.1 GB. So the stream's rate, channels and stated duration are
checked against ``AudioLimits`` before the first frame is decoded, the decoded duration is
counted again while decoding (headers lie; compressed silence is a decompression bomb), and
the rate change runs in bounded blocks (``audio.resample``).
"""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from vox_control.audio.resample import BLOCK, Resampler
from vox_control.errors import BadRequest
from vox_control.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

WHISPER_RATE = 16000
# Upload containers and codecs this decoder is tested with (any format FFmpeg reads works).
INPUT_FORMATS = ("wav", "flac", "mp3", "ogg/opus", "ogg/vorbis", "webm/opus", "m4a/aac", "aac")
# Rates and channel counts real recordings use (telephony 8 kHz and below to 384 kHz studio
# audio; up to 7.1.4 and ambisonics); anything outside is a broken or hostile header.
MIN_INPUT_RATE, MAX_INPUT_RATE = 1_000, 384_000
MAX_CHANNELS = 32

Source = bytes | IO[bytes]


@dataclass(frozen=True)
class AudioLimits:
    """What one decode may produce: the bounds every decoded input is checked against."""

    max_seconds: float = 4 * 3600.0
    min_rate: int = MIN_INPUT_RATE
    max_rate: int = MAX_INPUT_RATE
    max_channels: int = MAX_CHANNELS
    setting: str = "VOX_MAX_AUDIO_SECONDS"  # named in the 413's message: what raises it


# One self-contained binary frame of a streaming session: minutes, not hours.
FRAME_LIMITS = AudioLimits(max_seconds=600.0, setting="one streamed frame's limit")


class AudioDecodeError(BadRequest, ValueError):
    """The upload is empty, not audio, or corrupt."""

    code = "invalid_audio"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="file")


class AudioTooLong(AudioDecodeError):
    """The audio is longer than the server accepts (HTTP 413, the limit in the message)."""

    status = 413
    code = "audio_too_long"


def decode_blocks(
    source: Source, sample_rate: int = WHISPER_RATE, limits: AudioLimits = AudioLimits()
) -> Generator[npt.NDArray[np.float32], None, None]:
    """Mono float32 PCM at ``sample_rate``, block by block, from any container PyAV reads.

    The header is checked when the first block is asked for; each block is bounded (one
    decoded frame, resampled in ``audio.resample.BLOCK``-sample pieces), so a caller that
    does not keep the blocks decodes any length in constant memory. libswresample only
    converts the sample format and downmixes, at the source rate; soxr changes the rate.
    """
    if not source:
        raise AudioDecodeError("the uploaded file is empty")
    wav = _mono_pcm16_wav(source)
    if wav is not None:
        yield from _wav_blocks(wav, sample_rate, limits)
        return
    import av  # FFmpeg's libraries (~22 MB) load with the first audio decoded, not at start

    try:
        container = av.open(
            io.BytesIO(source) if isinstance(source, bytes) else source,
            mode="r",
            metadata_errors="ignore",
        )
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(f"could not read the upload as audio: {_reason(exc)}") from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("the upload has no audio stream")
        stream = container.streams.audio[0]
        source_rate = _check_header(container, stream, limits)
        mixer = av.AudioResampler(format="flt", layout="mono", rate=source_rate)
        yield from _at_rate(_mixed(av, container, stream, mixer), source_rate, sample_rate, limits)


def _mixed(av: Any, container: Any, stream: Any, mixer: Any) -> Iterator[npt.NDArray[Any]]:
    """The stream's samples as mono float32 at its own rate, frame by frame."""
    decoded = False
    try:
        for frame in container.decode(stream):
            decoded = True
            for out in mixer.resample(frame):
                yield out.to_ndarray().reshape(-1)
        for out in mixer.resample(None):
            yield out.to_ndarray().reshape(-1)
    except (av.error.FFmpegError, ValueError) as exc:
        if isinstance(exc, AudioDecodeError):
            raise
        if not decoded:
            raise AudioDecodeError(f"could not decode the audio: {_reason(exc)}") from exc
        # A truncated tail is common (a cut-off recording): keep what decoded.


def _at_rate(
    pieces: Iterator[npt.NDArray[Any]], rate: int, sample_rate: int, limits: AudioLimits
) -> Generator[npt.NDArray[np.float32], None, None]:
    """Mono ``pieces`` at ``rate`` as blocks at ``sample_rate``, their length counted against
    ``limits`` as they come (headers lie; compressed silence is a decompression bomb)."""
    resampler = Resampler(rate, sample_rate, "float32")
    budget, seen = int(limits.max_seconds * rate), 0  # source samples the limit allows
    for piece in pieces:
        seen += piece.size
        if seen > budget:
            raise _too_long(limits)
        yield from resampler.blocks(piece)
    if not seen:
        raise AudioDecodeError("the upload contains no audio samples")
    yield from resampler.blocks(np.zeros(0, dtype=np.float32), last=True)


def decode_audio(
    source: Source, sample_rate: int = WHISPER_RATE, limits: AudioLimits = AudioLimits()
) -> npt.NDArray[np.float32]:
    """The whole upload as one mono float32 array at ``sample_rate`` (see ``decode_blocks``)."""
    buffer = PcmBuffer()
    for block in decode_blocks(source, sample_rate, limits):
        buffer.append(block)
    return buffer.take()


class PcmBuffer:
    """A growing float32 buffer (amortised doubling; no list of pieces, no final concat)."""

    def __init__(self, capacity: int = WHISPER_RATE * 60) -> None:
        self._data = np.empty(capacity, dtype=np.float32)
        self.size = 0

    def append(self, block: npt.NDArray[np.float32]) -> None:
        end = self.size + block.size
        if end > self._data.size:
            grown = np.empty(max(end, self._data.size * 2), dtype=np.float32)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : end] = block
        self.size = end

    def view(self, start: int = 0, end: int | None = None) -> npt.NDArray[np.float32]:
        return self._data[start : self.size if end is None else min(end, self.size)]

    def drop_before(self, start: int) -> None:
        """Forget samples ``[0, start)``: the rest moves to the front, in place."""
        rest = self.size - start
        self._data[:rest] = self._data[start : self.size]
        self.size = rest

    def take(self) -> npt.NDArray[np.float32]:
        """The samples, without the spare capacity (copied only when that is worth it)."""
        data = self._data[: self.size]
        return data.copy() if self.size < self._data.size * 3 // 4 else data


class _Wav:
    """A mono PCM16 WAV's reader, positioned at its samples, and how many it can hold."""

    def __init__(self, reader: wave.Wave_read, available: int) -> None:
        self.reader = reader
        # The header's count, clipped to the bytes there are (a stream of unknown length
        # says 0xFFFFFFFF), as FFmpeg states it.
        self.frames = min(reader.getnframes(), available // 2)


def _mono_pcm16_wav(source: Source) -> _Wav | None:
    """The upload as a mono 16-bit PCM WAV, or None for anything else (FFmpeg reads that).

    What speech clients send most is read with the standard library: the first upload then
    does not load FFmpeg (~22 MB of the control plane, ~60 ms on the first transcription).
    Several channels, other sample formats and every other container go to FFmpeg, so a
    downmix is FFmpeg's alone.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    seekable = getattr(stream, "seekable", None)  # FFmpeg reads from bare readers too
    try:
        if seekable is None or not seekable():
            return None
        start = stream.tell()
        size = stream.seek(0, io.SEEK_END)
        stream.seek(start)
    except (OSError, ValueError):
        return None
    try:
        reader = wave.open(stream, "rb")  # noqa: SIM115 - read on by _wav_blocks
        if reader.getnchannels() == 1 and reader.getsampwidth() == 2:
            return _Wav(reader, size - stream.tell())
    except (wave.Error, EOFError, struct.error, ValueError, OSError):
        pass
    stream.seek(start)
    return None


def _wav_blocks(
    wav: _Wav, sample_rate: int, limits: AudioLimits
) -> Generator[npt.NDArray[np.float32], None, None]:
    """``decode_blocks`` of a mono PCM16 WAV: the same checks, then bounded reads."""
    rate = _check_format(wav.reader.getframerate(), 1, limits)
    if wav.frames > limits.max_seconds * rate:
        raise _too_long(limits, wav.frames / rate)
    yield from _at_rate(_wav_pieces(wav.reader), rate, sample_rate, limits)


def _wav_pieces(reader: wave.Wave_read) -> Iterator[npt.NDArray[np.float32]]:
    while chunk := reader.readframes(BLOCK):
        yield np.frombuffer(chunk[: len(chunk) & ~1], dtype="<i2").astype(np.float32) / 32768.0


def _check_header(container: Any, stream: Any, limits: AudioLimits) -> int:
    """The stream's rate, after its rate, channels and stated duration pass ``limits``."""
    rate = _check_format(
        int(stream.codec_context.sample_rate or stream.rate or 0),
        int(stream.codec_context.channels or 0),
        limits,
    )
    # FFmpeg states WAV durations clipped to the file's size; for other formats the
    # container's figure may be absent (None) and the count while decoding decides.
    from av import time_base

    stated = container.duration / time_base if container.duration else 0.0
    if stated > limits.max_seconds:
        raise _too_long(limits, stated)
    return rate


def _check_format(rate: int, channels: int, limits: AudioLimits) -> int:
    """``rate``, once it and ``channels`` are within ``limits``."""
    if rate <= 0:
        raise AudioDecodeError("the audio stream has no sample rate")
    if not limits.min_rate <= rate <= limits.max_rate:
        raise AudioDecodeError(
            f"the audio's sample rate of {rate} Hz is outside "
            f"{limits.min_rate}..{limits.max_rate} Hz"
        )
    if not 1 <= channels <= limits.max_channels:
        raise AudioDecodeError(
            f"the audio has {channels} channels; 1..{limits.max_channels} are accepted"
        )
    return rate


def _too_long(limits: AudioLimits, stated: float | None = None) -> AudioTooLong:
    said = f"; it says {stated:.0f} s" if stated else ""
    return AudioTooLong(
        f"the audio is longer than the limit of {limits.max_seconds:g} s{said} ({limits.setting})"
    )


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

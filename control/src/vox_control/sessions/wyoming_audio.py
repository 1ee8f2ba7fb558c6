"""Wyoming audio in: any allowed rate, width and channel count -> the model's rate, bounded.

Chunks are checked (absurd formats refused), mixed down to mono, and resampled as they arrive
to the STT model's catalog rate by the one streaming resampler (audio.resample.Resampler), so
a session holds int16 at the model's rate whatever the client sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wyoming.audio import AudioChunk

from vox_control.audio.decode import AudioDecodeError, PcmBuffer
from vox_control.audio.long_audio import LongAudio
from vox_control.audio.resample import Resampler
from vox_control.errors import PayloadTooLarge
from vox_control.inference import ResolvedModel
from vox_control.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

# What a client may send: absurd formats are refused, not converted.
MIN_RATE, MAX_RATE = 8000, 192_000
# Signed little-endian PCM by sample width, and the scale to [-1, 1) (audioop's convention).
WIDTHS = {1: ("<i1", 128.0), 2: ("<i2", 32768.0), 4: ("<i4", 2147483648.0)}
MAX_CHANNELS = 8


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


class Utterance:
    """One audio-start..audio-stop: int16 mono at the model's rate, bounded in seconds."""

    def __init__(self, model: ResolvedModel, rate: int, max_seconds: float) -> None:
        self.model = model
        self.rate = rate
        # The catalog's rate; a loaded model that says otherwise is resampled again by the seam.
        self.resampler = Resampler(rate, model.rate)
        self.limit = int(max_seconds * model.rate)
        self.pieces: list[bytes] = []
        self.samples = 0

    def push(self, pcm: np.ndarray) -> None:
        pcm16 = (np.clip(pcm, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
        self._keep(self.resampler.push_pcm16(pcm16))

    def finish(self) -> np.ndarray:
        self._keep(self.resampler.push_pcm16(b"", last=True))
        pcm = np.frombuffer(b"".join(self.pieces), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0

    def _keep(self, pcm16: bytes) -> None:
        self.samples += len(pcm16) // 2
        if self.samples > self.limit:
            raise PayloadTooLarge(
                f"the audio exceeds {self.limit // self.model.rate} s "
                "(VOX_STREAM_MAX_AUDIO_SECONDS)"
            )
        self.pieces.append(pcm16)


def windowed(pcm: np.ndarray, rate: int, window: int) -> np.ndarray | LongAudio:
    """An utterance longer than one runner request as the windows HTTP uploads use
    (audio.long_audio, cut at silence), else as it is."""
    if pcm.size <= window:
        return pcm
    head = PcmBuffer(window + 1)
    head.append(pcm[: window + 1])
    step = rate * 10
    rest = (pcm[i : i + step] for i in range(window + 1, pcm.size, step))
    return LongAudio(head, rest, rate, window)

"""Test helpers: encode PCM into upload containers with PyAV, and decode any audio back."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

# container name -> (muxer, codec, rate the codec is given); no vorbis encoder in PyAV wheels.
CONTAINERS = {
    "wav": ("wav", "pcm_s16le", None),
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "libmp3lame", None),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "m4a": ("ipod", "aac", None),
}


@dataclass
class Decoded:
    samples: np.ndarray  # float32, first channel
    rate: int
    channels: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


def encode_container(pcm16: np.ndarray, rate: int, kind: str, channels: int = 1) -> bytes:
    """Encode mono int16 ``pcm16`` (duplicated to ``channels``) into container ``kind``."""
    import soxr

    muxer, codec, codec_rate = CONTAINERS[kind]
    out_rate = codec_rate or rate
    data = pcm16
    if out_rate != rate:
        data = soxr.resample(pcm16, rate, out_rate).astype(np.int16)
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=out_rate, layout=layout)
        planar = np.repeat(data.reshape(1, -1), channels, axis=0)
        packed = planar.T.reshape(1, -1).copy()
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        frame.sample_rate = out_rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def decode(data: bytes) -> Decoded:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        pieces = []
        rate = channels = 0
        for frame in container.decode(stream):
            rate, channels = frame.sample_rate, frame.layout.nb_channels
            array = frame.to_ndarray()
            if array.dtype == np.int16:
                array = array.astype(np.float32) / 32768
            # Packed layouts interleave channels in one row; planar ones have a row each.
            first = array[0] if not frame.format.is_packed else array[0, ::channels]
            pieces.append(first.astype(np.float32))
    return Decoded(np.concatenate(pieces), rate, channels)


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 12000).astype(np.int16)

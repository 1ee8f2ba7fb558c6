"""Encoders for streamed speech: raw pcm16 (optionally resampled) and Ogg Opus pages.

Ogg Opus framing (documented in docs/streaming.md): the binary frames of one stream,
concatenated in order, are one Ogg Opus file (RFC 7845). Each frame holds one or more whole
Ogg pages, never part of one; the first frame starts with the OpusHead and OpusTags pages.
Pages are cut every 100 ms of audio, so a client can feed frames to an Ogg demuxer as they
come and start playing after the first one.
"""

from __future__ import annotations

from typing import Any, Protocol

import av
import numpy as np
import soxr

OPUS_RATE = 48000
OPUS_BITRATE = 32000
# Preferred Ogg page duration in microseconds: short pages keep the stream's latency low.
OPUS_PAGE_US = 100_000


class StreamEncoder(Protocol):
    sample_rate: int

    def push(self, pcm: bytes, rate: int) -> bytes:
        """Encode mono int16 PCM at ``rate``; returns whatever output is complete."""
        ...

    def finish(self) -> bytes:
        """Flush everything still buffered; the encoder is unusable afterwards."""
        ...


class PCM16Encoder:
    """Mono int16 little-endian PCM at ``sample_rate`` (resampled by soxr when it differs)."""

    def __init__(self, model_rate: int, sample_rate: int | None = None) -> None:
        self.sample_rate = sample_rate or model_rate
        self._stream: Any = None
        if self.sample_rate != model_rate:
            self._stream = soxr.ResampleStream(
                model_rate, self.sample_rate, 1, dtype="int16", quality="HQ"
            )

    def push(self, pcm: bytes, rate: int) -> bytes:
        if self._stream is None:
            return pcm
        out = self._stream.resample_chunk(np.frombuffer(pcm, dtype="<i2"))
        return np.asarray(out, dtype="<i2").tobytes()

    def finish(self) -> bytes:
        if self._stream is None:
            return b""
        out = self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        return np.asarray(out, dtype="<i2").tobytes()


class _Sink:
    """A write-only file for libavformat: collects the bytes it writes (whole Ogg pages)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


class OggOpusEncoder:
    """Mono Opus at 48 kHz in an Ogg stream, written page by page."""

    sample_rate = OPUS_RATE

    def __init__(self, bitrate: int = OPUS_BITRATE) -> None:
        self._sink = _Sink()
        self._container: Any = av.open(
            self._sink, mode="w", format="ogg", options={"page_duration": str(OPUS_PAGE_US)}
        )
        self._stream: Any = self._container.add_stream("libopus", rate=OPUS_RATE)
        self._stream.layout = "mono"
        self._stream.bit_rate = bitrate
        self._resampler: Any = None
        self._rate = 0

    def push(self, pcm: bytes, rate: int) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2")
        if samples.size:
            if self._resampler is None or rate != self._rate:
                self._flush_resampler()
                self._rate = rate
                self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            for out in self._resampler.resample(frame):
                self._encode(out)
        return self._sink.take()

    def finish(self) -> bytes:
        self._flush_resampler()
        self._encode(None)
        self._container.close()
        return self._sink.take()

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self._encode(out)
            self._resampler = None

    def _encode(self, frame: Any) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


def make_encoder(response_format: str, model_rate: int, sample_rate: int | None) -> StreamEncoder:
    if response_format == "opus":
        return OggOpusEncoder()
    return PCM16Encoder(model_rate, sample_rate)

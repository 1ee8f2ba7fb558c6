"""The WebSocket speech stream's encoders: raw pcm16 or Ogg Opus pages (``audio.encode``).

Ogg Opus framing (documented in docs/streaming.md): the binary frames of one stream,
concatenated in order, are one Ogg Opus file (RFC 7845). Each frame holds one or more whole
Ogg pages, never part of one; the first frame starts with the OpusHead and OpusTags pages.
Pages are cut every 100 ms of audio, so a client can feed frames to an Ogg demuxer as they
come and start playing after the first one.
"""

from __future__ import annotations

from vox_control.audio.encode import Encoder, make_encoder

OPUS_RATE = 48000
# Ogg page duration in microseconds: short pages keep the stream's latency low, and 100 ms
# pages cost a fifth of the page overhead of HTTP's 20 ms ones.
OPUS_PAGE_US = 100_000


def stream_encoder(response_format: str, model_rate: int, sample_rate: int | None) -> Encoder:
    """opus: Ogg Opus at 48 kHz in 100 ms pages; else mono PCM16 at ``sample_rate`` (default:
    the model's rate)."""
    if response_format == "opus":
        return make_encoder("opus", OPUS_RATE, OPUS_PAGE_US)
    return make_encoder("pcm", sample_rate or model_rate)

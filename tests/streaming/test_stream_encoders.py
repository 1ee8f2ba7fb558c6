"""Stream encoders: pcm16 passthrough/resampling and Ogg Opus pages that decode back."""

from __future__ import annotations

import io

import av
import numpy as np
from vox_control.audio.stream_encode import stream_encoder


def _tone(seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def test_pcm16_passthrough_and_resample() -> None:
    same = stream_encoder("pcm16", 22050, None)
    pcm = _tone(0.5, 22050)
    assert same.push(pcm, 22050) == pcm
    assert same.finish() == b""
    up = stream_encoder("pcm16", 22050, 16000)
    out = up.push(pcm, 22050) + up.push(pcm, 22050) + up.finish()
    assert up.sample_rate == 16000
    assert abs(len(out) // 2 - 16000) <= 2


def test_opus_frames_are_whole_ogg_pages_that_concatenate_to_a_decodable_file() -> None:
    enc = stream_encoder("opus", 22050, None)
    frames = [enc.push(_tone(1.0, 22050), 22050) for _ in range(3)]
    frames.append(enc.finish())
    frames = [f for f in frames if f]
    assert len(frames) >= 3
    for frame in frames:
        assert frame.startswith(b"OggS")  # every frame begins at a page boundary
    assert b"OpusHead" in frames[0][:64]
    with av.open(io.BytesIO(b"".join(frames))) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name in ("opus", "libopus")
        samples = sum(f.samples for f in container.decode(stream))
    assert abs(samples / 48000 - 3.0) < 0.03


def test_a_rate_change_mid_stream_loses_nothing() -> None:
    enc = stream_encoder("pcm16", 22050, 16000)
    out = enc.push(_tone(1.0, 22050), 22050) + enc.push(_tone(1.0, 24000), 24000) + enc.finish()
    assert abs(len(out) // 2 - 32000) <= 4


def test_each_opus_frame_decodes_incrementally() -> None:
    # A client feeding frames to a demuxer as they arrive can decode everything so far.
    enc = stream_encoder("opus", 24000, None)
    first = enc.push(_tone(1.0, 24000), 24000)
    with av.open(io.BytesIO(first)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    # All but the encoder lookahead and the last, still open page (under 0.3 s together).
    assert samples > 0.7 * 48000
    enc.finish()

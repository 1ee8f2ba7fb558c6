"""Streaming encoders: every format decodes back at the right rate, channels and duration."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from vox_control.audio.decode import wav_header
from vox_control.audio.encode import (
    OPENAI_PCM_RATE,
    SPEECH_FORMATS,
    CodecEncoder,
    encode_all,
    encode_stream,
    make_encoder,
    output_rate,
)
from vox_control.errors import BadRequest, Unprocessable

from tests.openai.media import decode, tone

RATE = 22050


@pytest.mark.parametrize("fmt", [f for f in SPEECH_FORMATS if f != "pcm"])
def test_each_format_decodes_back(fmt: str) -> None:
    pcm = tone(3.0, RATE)
    data = encode_all(pcm.tobytes(), RATE, fmt)
    decoded = decode(data)
    assert decoded.channels == 1
    assert decoded.rate == output_rate(fmt, RATE, None)
    # Codecs add priming/padding (aac ~1024 samples, mp3 ~1105, opus 312 at 48 kHz).
    assert decoded.duration == pytest.approx(3.0, abs=0.08), fmt


def test_pcm_is_openai_24k_s16le() -> None:
    pcm = tone(2.0, RATE)
    data = encode_all(pcm.tobytes(), RATE, "pcm")
    assert output_rate("pcm", RATE, None) == OPENAI_PCM_RATE
    assert len(data) / 2 / OPENAI_PCM_RATE == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_bytes_leave_after_each_sentence(fmt: str) -> None:
    """A sentence pushed gives bytes out at once: streams start before synthesis ends."""
    rate = output_rate(fmt, RATE, None)
    encoder = make_encoder(fmt, rate)
    sizes = [len(encoder.push(tone(1.0, RATE).tobytes(), RATE)) for _ in range(3)]
    tail = encoder.finish()
    # Everything but the header must be audio: the first sentence already carries some.
    assert all(size > 1000 for size in sizes), (fmt, sizes)
    assert len(tail) < sum(sizes)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac"])
async def test_first_codec_bytes_leave_before_the_whole_first_sentence_is_encoded(
    fmt: str,
) -> None:
    async def sentences() -> AsyncIterator[tuple[bytes, int]]:
        for _ in range(2):
            yield tone(4.0, RATE).tobytes(), RATE

    pieces = [piece async for piece in encode_stream(sentences(), fmt, None)]
    # The first sentence goes out as a fifth of a second, then its rest; the second whole.
    assert len(pieces) >= 4, (fmt, [len(p) for p in pieces])
    assert len(pieces[0]) * 5 < len(pieces[1]), (fmt, [len(p) for p in pieces])
    decoded = decode(b"".join(pieces))
    # Splitting adds no audio: only the codec's priming and last-frame padding (aac up to
    # 2 x 1024 samples, 0.093 s at 22.05 kHz).
    assert decoded.duration == pytest.approx(8.0, abs=0.1), fmt


def test_abandoned_codec_encoder_closes() -> None:
    encoder = make_encoder("mp3", RATE)
    assert isinstance(encoder, CodecEncoder)
    encoder.push(tone(0.5, RATE).tobytes(), RATE)
    encoder.close()


def test_output_rate_rules() -> None:
    assert output_rate("mp3", 22050, None) == 22050
    assert output_rate("opus", 22050, None) == 48000
    assert output_rate("aac", 22050, None) == 22050
    assert output_rate("mp3", 23000, None) == 24000  # next rate the codec takes
    assert output_rate("flac", 23000, None) == 23000
    assert output_rate("wav", 22050, 16000) == 16000
    with pytest.raises(Unprocessable) as info:
        output_rate("opus", 22050, 44100)
    assert info.value.status == 422
    assert info.value.param == "sample_rate"
    with pytest.raises(BadRequest):
        output_rate("wav", 22050, 100)
    with pytest.raises(BadRequest):
        output_rate("ogg", 22050, None)


def test_wav_header_sizes() -> None:
    assert wav_header(16000, None)[4:8] == b"\xff\xff\xff\xff"
    assert len(wav_header(16000, 10)) == 44

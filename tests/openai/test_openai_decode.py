"""Upload decoding: every common container to mono float32 at the model rate, clear errors."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from vox_control.audio.decode import AudioDecodeError, decode_audio

from tests.openai.media import CONTAINERS, encode_container, tone


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
@pytest.mark.parametrize("channels", [1, 2])
def test_containers_decode_to_16k_mono(kind: str, channels: int) -> None:
    data = encode_container(tone(2.0, 22050), 22050, kind, channels)
    pcm = decode_audio(data, 16000)
    assert pcm.dtype == np.float32
    assert pcm.ndim == 1
    assert len(pcm) / 16000 == pytest.approx(2.0, abs=0.06), kind
    # The tone survives (no channel cancellation, no level blow-up).
    peak = float(np.abs(pcm[4000:-4000]).max())
    assert 0.2 < peak < 1.0, (kind, peak)


def test_resampling_keeps_the_frequency() -> None:
    pcm = decode_audio(encode_container(tone(1.0, 44100, 1000.0), 44100, "wav"), 16000)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert np.argmax(spectrum) * 16000 / len(pcm) == pytest.approx(1000, abs=3)


def _video_only() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is not audio at all" * 10, "could not read"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "no audio stream"),
        (_video_only(), "no audio stream"),
    ],
)
def test_bad_uploads_raise_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(AudioDecodeError, match=message):
        decode_audio(data)


def test_truncated_upload_keeps_what_decoded() -> None:
    data = encode_container(tone(2.0, 22050), 22050, "mp3")
    pcm = decode_audio(data[: len(data) // 2])
    assert 0.7 < len(pcm) / 16000 < 1.3

"""Units of the audio bounds: block-wise resampling, header and decode-time limits, windows cut
at silence and joined with the right offsets, and the global upload-bytes budget."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av
import numpy as np
import pytest
import soxr
from vox_control.audio.decode import (
    AudioDecodeError,
    AudioLimits,
    AudioTooLong,
    decode_audio,
    decode_blocks,
)
from vox_control.audio.long_audio import LongAudio, open_audio, transcribe_long
from vox_control.audio.resample import BLOCK, Resampler, resample
from vox_control.errors import Unavailable
from vox_control.routes.forms import UploadBudget
from vox_control.text.subtitles import render
from vox_protocol import Segment, Transcript, Word

from tests.openai.media import tone
from tests.reliability.audio_helpers import wav

RATE = 16000


# ------------------------------------------------------------------ resampler


def test_resampler_calls_soxr_in_bounded_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 s at 1 kHz to 16 kHz: no soxr call sees more than BLOCK input samples, and the
    streamed result is the one-shot soxr result."""
    seen: list[int] = []
    real = soxr.ResampleStream

    class Spy:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._inner = real(*args, **kwargs)

        def resample_chunk(self, x: np.ndarray, last: bool = False) -> np.ndarray:
            seen.append(x.size)
            return np.asarray(self._inner.resample_chunk(x, last=last))

    monkeypatch.setattr(soxr, "ResampleStream", Spy)  # resample.py imports it when used
    signal = tone(30.0, 1000, 50.0).astype(np.float32) / 32768
    blocks = list(Resampler(1000, RATE, "float32").blocks(signal, last=True))
    assert max(seen) <= BLOCK
    assert len(seen) >= 30_000 // BLOCK
    assert max(b.size for b in blocks) <= BLOCK * 16 + 1024
    streamed = np.concatenate(blocks)
    whole = soxr.resample(signal, 1000, RATE, quality="HQ")
    assert abs(streamed.size - whole.size) <= 1
    n = min(streamed.size, whole.size)
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_resampler_state_carries_across_pushes() -> None:
    signal = tone(3.0, 44100).astype(np.float32) / 32768
    stream = Resampler(44100, RATE, "float32")
    pieces = [stream.push(signal[i : i + 4410]) for i in range(0, signal.size, 4410)]
    pieces.append(stream.push(np.zeros(0, np.float32), last=True))
    joined = np.concatenate(pieces)
    whole = resample(signal, 44100, RATE)
    assert abs(joined.size - whole.size) <= 1
    n = min(joined.size, whole.size)
    assert np.max(np.abs(joined[:n] - whole[:n])) < 1e-3


def test_pcm16_bytes_in_and_out() -> None:
    pcm = tone(1.0, 24000).tobytes()
    stream = Resampler(24000, 48000)
    out = stream.push_pcm16(pcm) + stream.push_pcm16(b"", last=True)
    assert len(out) == pytest.approx(2 * len(pcm), abs=8)
    assert Resampler(24000, 24000).push_pcm16(pcm) is pcm


# ------------------------------------------------------------------ decode limits


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (wav(999, 1, b"\0\0" * 1000), "999 Hz is outside 1000..384000"),
        (wav(400_000, 1, b"\0\0" * 1000), "400000 Hz is outside 1000..384000"),
        (wav(16000, 33, b"\0\0" * 33 * 100), "33 channels; 1..32"),
    ],
)
def test_header_outside_the_limits(data: bytes, words: str) -> None:
    with pytest.raises(AudioDecodeError, match=words):
        decode_audio(data)


def test_stated_duration_past_the_limit_is_refused_before_decoding() -> None:
    with pytest.raises(AudioTooLong, match=r"limit of 2 s; it says 3 s \(VOX_MAX_AUDIO_SECONDS"):
        next(decode_blocks(wav(16000, 1, b"\0\0" * 48000), RATE, AudioLimits(max_seconds=2)))


class _WriteOnly:
    """A sink without seek: the muxer cannot go back to write the stream's length."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


class _Unseekable:
    """A reader without seek or size: FFmpeg cannot estimate the stream's length."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)


def _unstated_mp3(seconds: float) -> Any:
    sink = _WriteOnly()
    with av.open(sink, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            tone(seconds, RATE).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return _Unseekable(bytes(sink.data))


def test_duration_is_counted_while_decoding() -> None:
    """A stream whose header states no usable length is stopped when it passes the limit."""
    decoded = 0
    refused = False
    try:
        for block in decode_blocks(_unstated_mp3(8.0), RATE, AudioLimits(max_seconds=3.0)):
            decoded += block.size
    except AudioTooLong as exc:
        refused = "limit of 3 s" in str(exc)
    assert refused
    assert 2.5 * RATE <= decoded <= 3.2 * RATE  # refused while decoding, not by the header


def test_decodes_from_a_file_object() -> None:
    pcm = decode_audio(io.BytesIO(wav(8000, 2, tone(2.0, 8000).repeat(2).tobytes())))
    assert pcm.size == pytest.approx(2 * RATE, abs=64)


def _through_ffmpeg(data: bytes, rate: int = RATE) -> np.ndarray:
    """What FFmpeg makes of ``data``: the mono PCM16 WAV fast path turned off."""
    import vox_control.audio.decode as decode

    original = decode._mono_pcm16_wav
    decode._mono_pcm16_wav = lambda _source: None  # type: ignore[assignment]
    try:
        return decode_audio(data, rate)
    finally:
        decode._mono_pcm16_wav = original


@pytest.mark.parametrize("source_rate", [16000, 22050, 44100])
def test_a_mono_pcm16_wav_decodes_as_ffmpeg_decodes_it(source_rate: int) -> None:
    data = wav(source_rate, 1, tone(1.5, source_rate).tobytes())
    ours, ffmpegs = decode_audio(data), _through_ffmpeg(data)
    assert ours.shape == ffmpegs.shape
    assert np.abs(ours - ffmpegs).max() < 1e-6


def test_a_wav_of_unknown_length_is_clipped_to_its_bytes_not_refused() -> None:
    data = bytearray(wav(RATE, 1, tone(1.0, RATE).tobytes()))
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"  # RIFF and data sizes of a live stream
    pcm = decode_audio(bytes(data))
    assert pcm.size == RATE
    with pytest.raises(AudioTooLong, match=r"limit of 0\.5 s; it says 1 s"):
        decode_audio(bytes(data), RATE, AudioLimits(max_seconds=0.5))


def test_an_odd_trailing_byte_is_dropped() -> None:
    pcm = decode_audio(wav(RATE, 1, tone(0.5, RATE).tobytes()) + b"\x01")
    assert pcm.size == RATE // 2


def test_a_mono_pcm16_wav_does_not_load_ffmpeg() -> None:
    """FFmpeg's libraries are ~22 MB of the control plane: a WAV-only server never maps them."""
    import subprocess
    import sys

    code = (
        "import sys; from vox_control.audio.decode import decode_audio; "
        "from tests.reliability.audio_helpers import wav; "
        "decode_audio(wav(16000, 1, bytes(3200))); print('av' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ long audio in windows

GAPS = [(15.0, 15.5), (33.0, 33.5), (52.0, 52.4)]  # silence in 70 s of noise


def _noisy_with_gaps(seconds: float = 70.0) -> bytes:
    rng = np.random.default_rng(7)
    signal = (rng.standard_normal(int(seconds * RATE)) * 6000).astype(np.int16)
    for a, b in GAPS:
        signal[int(a * RATE) : int(b * RATE)] = 0
    return wav(RATE, 1, signal.tobytes())


def _fake_runner(sizes: list[int]) -> Any:
    """Answers each window with one segment of two words, at 1.0 s and 2.0 s into it."""

    async def transcribe(pcm: np.ndarray) -> Transcript:
        index = len(sizes)
        sizes.append(pcm.size)
        words = [
            Word(start=1.0, end=1.4, word=f" w{index}a"),
            Word(start=2.0, end=2.4, word=f" w{index}b"),
        ]
        segment = Segment(start=1.0, end=2.4, text=f" w{index}a w{index}b", words=words)
        return Transcript(id=index, text=segment.text, language="en", segments=[segment])

    return transcribe


def test_long_audio_is_cut_at_silence_and_joined_with_offsets() -> None:
    window = 20 * RATE
    audio = open_audio(io.BytesIO(_noisy_with_gaps()), RATE, AudioLimits(), window)
    assert isinstance(audio, LongAudio)
    sizes: list[int] = []
    joined = asyncio.run(transcribe_long(audio, _fake_runner(sizes)))
    assert len(sizes) == 4
    assert max(sizes) <= window
    assert sum(sizes) == pytest.approx(70 * RATE, abs=16)
    starts = np.cumsum([0, *sizes[:-1]]) / RATE
    for (a, b), cut in zip(GAPS, starts[1:], strict=True):
        assert a <= cut <= b, (a, b, cut)  # each window ends inside a silent gap
    words = [w for s in joined.segments for w in s.words]
    assert [w.word.strip() for w in words] == [f"w{i}{x}" for i in range(4) for x in "ab"]
    for i, start in enumerate(starts):
        assert words[2 * i].start == pytest.approx(start + 1.0, abs=1e-3)
    assert joined.text == " ".join(f"w{i}a w{i}b" for i in range(4))
    assert joined.duration == pytest.approx(70.0, abs=0.01)
    assert joined.language == "en"
    srt = render(joined, "srt")
    last = starts[-1] + 1.0
    assert f"00:00:{int(last):02d}," in srt, srt


def test_short_audio_is_one_array() -> None:
    pcm = open_audio(io.BytesIO(_noisy_with_gaps(10.0)), RATE, AudioLimits(), 20 * RATE)
    assert isinstance(pcm, np.ndarray)
    assert pcm.size == 10 * RATE


def test_a_window_past_the_duration_limit_ends_the_transcription() -> None:
    audio = open_audio(_unstated_mp3(30.0), RATE, AudioLimits(max_seconds=12.0), 5 * RATE)
    assert isinstance(audio, LongAudio)
    sizes: list[int] = []
    with pytest.raises(AudioTooLong):
        asyncio.run(transcribe_long(audio, _fake_runner(sizes)))
    assert sum(sizes) <= 12 * RATE


# ------------------------------------------------------------------ upload budget


def _request(length: int | None, chunks: list[bytes]) -> tuple[dict[str, Any], Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope = {"type": "http", "headers": headers}
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return scope, receive


async def _read_all(_: Any, receive: Any, __: Any) -> None:
    while (await receive()).get("more_body"):
        pass


def test_upload_budget_refuses_a_declared_body_that_does_not_fit() -> None:
    budget = UploadBudget(100)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await _read_all(scope, receive, send)
        inside.set()
        await release.wait()

    async def main() -> None:
        first = asyncio.create_task(budget.middleware(slow)(*_request(80, [b"x" * 80]), None))
        await inside.wait()
        assert budget.held == 80
        with pytest.raises(Unavailable, match="limit of 100 bytes") as refused:
            await budget.middleware(_read_all)(*_request(30, [b"y" * 30]), None)
        assert refused.value.status == 503
        assert refused.value.headers["Retry-After"]
        release.set()
        await first
        assert budget.held == 0
        await budget.middleware(_read_all)(*_request(30, [b"y" * 30]), None)  # fits now

    asyncio.run(main())


def test_upload_budget_counts_a_chunked_body_as_it_arrives() -> None:
    budget = UploadBudget(100)
    app = budget.middleware(_read_all)
    with pytest.raises(Unavailable):
        asyncio.run(app(*_request(None, [b"a" * 60, b"b" * 60]), None))
    assert budget.held == 0
    asyncio.run(app(*_request(None, [b"a" * 60, b"b" * 30]), None))
    assert budget.held == 0

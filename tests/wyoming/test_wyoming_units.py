"""Unit tests of the Wyoming pieces that need no server: framing limits, audio conversion,
the listen address rule, and the error renderer."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from vox_control.audio.decode import AudioDecodeError
from vox_control.audio.long_audio import LongAudio
from vox_control.errors import BadRequest, ModelNotFound, Overloaded, PayloadTooLarge
from vox_control.inference import ResolvedModel
from vox_control.renderers import wyoming_error
from vox_control.sessions.wyoming import parsed
from vox_control.sessions.wyoming_audio import Utterance, check_format, to_float, windowed
from vox_control.sessions.wyoming_info import MAX_PAYLOAD, FrameError, read_event
from vox_control.sessions.wyoming_server import parse_uri
from wyoming.audio import AudioChunk
from wyoming.event import Event
from wyoming.tts import Synthesize


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=64 * 1024)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_an_event_with_data_and_payload_is_read() -> None:
    more = b'{"width": 2, "channels": 1}'
    header = b'{"type": "audio-chunk", "data": {"rate": 16000}, "data_length": %d, ' % len(more)
    frame = header + b'"payload_length": 4}\n' + more + b"\x01\x00\x02\x00"
    event = await read_event(reader_of(frame))
    assert event is not None
    assert event.type == "audio-chunk"
    assert event.data == {"rate": 16000, "width": 2, "channels": 1}
    assert event.payload == b"\x01\x00\x02\x00"


@pytest.mark.parametrize(
    "frame",
    [
        b"not json\n",
        b'["type"]\n',
        b'{"type": 7}\n',
        b'{"type": "x", "payload_length": -1}\n',
        b'{"type": "x", "payload_length": ' + str(MAX_PAYLOAD + 1).encode() + b"}\n",
        b'{"type": "x", "data_length": "12"}\n',
        b'{"type": "x", "data": [1]}\n',
        b"[" * 60_000 + b"\n",  # nested past msgspec's depth limit, within the line limit
    ],
)
async def test_broken_frames_are_refused_before_any_allocation(frame: bytes) -> None:
    with pytest.raises(FrameError):
        await read_event(reader_of(frame))


async def test_a_header_past_the_limit_and_a_cut_payload() -> None:
    with pytest.raises(FrameError):
        await read_event(reader_of(b'{"type": "' + b"x" * 70_000 + b'"}\n'))
    # The peer left mid-payload: the end of the stream, not an error.
    assert await read_event(reader_of(b'{"type": "x", "payload_length": 10}\nabc')) is None
    assert await read_event(reader_of(b"")) is None


def test_widths_and_channels_become_mono_float() -> None:
    stereo16 = np.array([[16384, -16384], [32767, 32767]], dtype="<i2").tobytes()
    mono = to_float(AudioChunk(rate=16000, width=2, channels=2, audio=stereo16))
    assert mono.dtype == np.float32
    np.testing.assert_allclose(mono, [0.0, 32767 / 32768], atol=1e-6)
    s32 = np.array([2**30], dtype="<i4").tobytes()
    np.testing.assert_allclose(to_float(AudioChunk(16000, 4, 1, s32)), [0.5])
    s8 = np.array([-64, 127, 5], dtype="<i1").tobytes()  # a trailing partial frame is dropped
    np.testing.assert_allclose(to_float(AudioChunk(16000, 1, 2, s8)), [(-64 + 127) / 256])


@pytest.mark.parametrize(
    "data",
    [
        {"rate": 7999, "width": 2, "channels": 1},
        {"rate": 200_000, "width": 2, "channels": 1},
        {"rate": 16000, "width": 3, "channels": 1},
        {"rate": 16000, "width": True, "channels": 1},
        {"rate": 16000, "width": 2, "channels": 0},
        {"rate": 16000, "width": 2, "channels": 9},
        {"rate": "16000", "width": 2, "channels": 1},
        {},
    ],
)
def test_absurd_formats_are_invalid_audio(data: dict[str, object]) -> None:
    with pytest.raises(AudioDecodeError):
        check_format(data)


def test_listen_addresses() -> None:
    assert parse_uri("tcp://127.0.0.1:10300", insecure=False) == ("tcp", "127.0.0.1", 10300)
    assert parse_uri("unix:///run/vox.sock", insecure=False) == ("unix", "/run/vox.sock", 0)
    with pytest.raises(ValueError, match="--insecure"):
        parse_uri("tcp://0.0.0.0:10300", insecure=False)
    assert parse_uri("tcp://0.0.0.0:10300", insecure=True)[1] == "0.0.0.0"
    for bad in ("tcp://127.0.0.1", "http://127.0.0.1:1", "10300", "unix://"):
        with pytest.raises(ValueError, match="not tcp"):
            parse_uri(bad, insecure=True)


def test_errors_render_as_text_and_code() -> None:
    text, code = wyoming_error(ModelNotFound("model 'x:y' is not pulled"))
    assert (text, code) == ("model 'x:y' is not pulled", "model_not_found")
    assert wyoming_error(Overloaded("too many requests queued"))[1] == "queue_full"
    text, code = wyoming_error(RuntimeError("secret detail"))
    assert code == "internal_error"
    assert "secret" not in text


def test_an_utterance_is_resampled_to_the_model_rate_and_bounded() -> None:
    manifest: Any = None  # the utterance reads only the name and the rate
    model = ResolvedModel("whisper:tiny.en", "stt", manifest, 16000)
    utterance = Utterance(model, 48000, max_seconds=2.0)
    tone = np.sin(np.arange(48000) / 48000 * 2 * np.pi * 440).astype(np.float32) / 2
    for piece in np.array_split(tone, 7):  # chunk edges leave no seams: one streaming resampler
        utterance.push(piece)
    pcm = utterance.finish()
    assert abs(pcm.size - 16000) <= 64
    assert 0.45 < float(np.abs(pcm).max()) < 0.55
    with pytest.raises(PayloadTooLarge):
        Utterance(model, 16000, max_seconds=0.5).push(np.zeros(9000, dtype=np.float32))


@pytest.mark.parametrize(
    "data",
    [{"text": 5}, {"text": "hi", "voice": "joe"}, {"text": "hi", "voice": {"name": ["x"]}}, {}],
)
def test_malformed_events_are_bad_requests(data: dict[str, object]) -> None:
    with pytest.raises(BadRequest, match="malformed 'synthesize'"):
        parsed(Synthesize, Event(type="synthesize", data=data))


def test_an_utterance_longer_than_a_window_is_windowed() -> None:
    pcm = np.arange(100_000, dtype=np.float32)
    assert windowed(pcm, 16000, 100_000) is pcm
    long = windowed(pcm, 16000, 40_000)
    assert isinstance(long, LongAudio)
    assert long.head.size == 40_001
    rest = np.concatenate(list(long.rest))
    np.testing.assert_array_equal(np.concatenate([long.head.view(), rest]), pcm)

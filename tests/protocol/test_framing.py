"""Framing: round trips under any split of the byte stream, size limits, bad frames."""

from __future__ import annotations

import contextlib
import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vox_protocol import (
    AudioChunk,
    Cancel,
    ControlMessage,
    Error,
    FrameDecoder,
    FrameEncoder,
    FrameTooLarge,
    Hello,
    Load,
    ProtocolError,
    RunnerMessage,
    Segment,
    Synthesize,
    Transcribe,
    Transcript,
    Word,
)

words = st.builds(
    Word,
    start=st.floats(0, 1e4, allow_nan=False),
    end=st.floats(0, 1e4, allow_nan=False),
    word=st.text(max_size=20),
    probability=st.floats(0, 1),
)
segments = st.builds(
    Segment,
    start=st.floats(0, 1e4, allow_nan=False),
    end=st.floats(0, 1e4, allow_nan=False),
    text=st.text(max_size=80),
    words=st.lists(words, max_size=5),
)
ids = st.integers(0, 2**32)
runner_messages = st.one_of(
    st.builds(
        Transcript, id=ids, text=st.text(max_size=200), segments=st.lists(segments, max_size=4)
    ),
    st.builds(
        AudioChunk,
        id=ids,
        seq=st.integers(0, 10_000),
        audio=st.binary(max_size=4096),
        sample_rate=st.sampled_from([16000, 22050, 24000]),
    ),
    st.builds(Error, id=ids, code=st.sampled_from(["bad_request", "internal"]), message=st.text()),
)
control_messages = st.one_of(
    st.builds(Hello, protocol_version=st.integers(0, 100)),
    st.builds(Load, id=ids, model_dir=st.text(min_size=1, max_size=50)),
    st.builds(
        Transcribe, id=ids, audio=st.binary(max_size=4096), language=st.none() | st.just("en")
    ),
    st.builds(Synthesize, id=ids, text=st.text(max_size=200), speed=st.floats(0.25, 4.0)),
    st.builds(Cancel, id=ids),
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


@settings(max_examples=200, deadline=None)
@given(
    st.lists(runner_messages, min_size=1, max_size=8), st.lists(st.integers(0, 10**6), max_size=20)
)
def test_runner_messages_survive_any_split(messages: list[object], cuts: list[int]) -> None:
    encoder = FrameEncoder()
    decoder: FrameDecoder[RunnerMessage] = FrameDecoder(RunnerMessage)
    stream = b"".join(encoder.encode(m) for m in messages)
    out: list[object] = []
    for piece in _split(stream, cuts):
        out.extend(decoder.feed(piece))
    assert out == messages
    assert decoder.pending == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(control_messages, min_size=1, max_size=8))
def test_control_messages_byte_by_byte(messages: list[object]) -> None:
    encoder = FrameEncoder()
    decoder: FrameDecoder[ControlMessage] = FrameDecoder(ControlMessage)
    stream = b"".join(encoder.encode(m) for m in messages)
    out: list[object] = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == messages


def test_audio_travels_as_raw_bytes() -> None:
    pcm = bytes(range(256)) * 64
    frame = FrameEncoder().encode(AudioChunk(id=1, seq=0, audio=pcm, sample_rate=22050))
    # msgpack bin: the payload appears verbatim in the frame, not base64 or a list of ints.
    assert pcm in frame
    assert len(frame) < len(pcm) + 100


def test_oversized_frame_is_rejected_before_reading_it() -> None:
    decoder: FrameDecoder[RunnerMessage] = FrameDecoder(RunnerMessage, max_frame=1024)
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 1024 bytes"):
        decoder.feed(struct.pack(">I", 1025))  # only the header has arrived


def test_encoder_refuses_oversized_frames_and_stays_usable() -> None:
    encoder = FrameEncoder(max_frame=1000)
    with pytest.raises(FrameTooLarge):
        encoder.encode(AudioChunk(id=1, seq=0, audio=b"x" * 2000, sample_rate=16000))
    frame = encoder.encode(Cancel(id=7))
    assert FrameDecoder(ControlMessage).feed(frame) == [Cancel(id=7)]


def test_unknown_message_type_is_a_protocol_error() -> None:
    payload = msgspec.msgpack.encode({"type": "teleport", "id": 1})
    with pytest.raises(ProtocolError, match="undecodable frame"):
        FrameDecoder(RunnerMessage).feed(struct.pack(">I", len(payload)) + payload)


def test_message_of_the_other_direction_is_refused() -> None:
    frame = FrameEncoder().encode(Hello(protocol_version=1))
    with pytest.raises(ProtocolError):
        FrameDecoder(RunnerMessage).feed(frame)


@given(st.binary(min_size=1, max_size=64))
def test_garbage_payload_never_crashes_with_anything_but_protocol_error(garbage: bytes) -> None:
    decoder: FrameDecoder[RunnerMessage] = FrameDecoder(RunnerMessage)
    with contextlib.suppress(ProtocolError):
        decoder.feed(struct.pack(">I", len(garbage)) + garbage)


def test_new_fields_with_defaults_stay_compatible() -> None:
    class TranscriptV2(msgspec.Struct, tag_field="type", tag="transcript"):
        id: int
        text: str
        confidence: float = 1.0  # a field this side does not know

    payload = msgspec.msgpack.encode(TranscriptV2(id=1, text="hi", confidence=0.5))
    [decoded] = FrameDecoder(RunnerMessage).feed(struct.pack(">I", len(payload)) + payload)
    assert decoded == Transcript(id=1, text="hi")

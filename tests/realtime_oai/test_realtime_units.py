"""Units of the OpenAI Realtime session: session.update parsing, audio decoding, and the
server_vad turn detector fed by a fake VAD (probability lists)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from vox_control.sessions.oai_realtime_events import (
    EventError,
    SessionConfig,
    TurnDetection,
    apply_update,
    decode_append,
    session_object,
)
from vox_control.sessions.oai_realtime_vad import SpeechStarted, SpeechStopped, TurnDetector


def test_ga_update_sets_every_field() -> None:
    config = apply_update(
        SessionConfig(),
        {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "whisper-1", "language": "en", "prompt": "Vox"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.7,
                        "prefix_padding_ms": 100,
                        "silence_duration_ms": 800,
                    },
                }
            },
        },
    )
    assert config == SessionConfig(
        "whisper-1", "en", "Vox", "audio/pcmu", TurnDetection(0.7, 100, 800)
    )


def test_beta_flat_fields_and_null_turn_detection() -> None:
    config = apply_update(
        SessionConfig(),
        {
            "input_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "gpt-4o-transcribe"},
            "turn_detection": None,
        },
    )
    assert (config.format, config.model, config.turn_detection) == (
        "audio/pcma",
        "gpt-4o-transcribe",
        None,
    )


def test_update_keeps_what_it_does_not_name() -> None:
    before = SessionConfig(model="whisper-1", language="en", turn_detection=None)
    assert apply_update(before, {"type": "transcription"}) == before


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"audio": {"input": {"format": "mp3"}}}, "session.audio.input.format"),
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "session.audio.input.format.rate",
        ),
        (
            {"audio": {"input": {"turn_detection": {"threshold": 2}}}},
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
            "session.audio.input.turn_detection.type",
        ),
        (
            {"audio": {"input": {"transcription": {"language": 7}}}},
            "session.audio.input.transcription.language",
        ),
        ({"type": "realtime"}, "session.type"),
        ({"audio": []}, "session.audio"),
        ("nope", "session"),
    ],
)
def test_bad_updates_name_the_field(session: object, param: str) -> None:
    with pytest.raises(EventError) as caught:
        apply_update(SessionConfig(), session)
    assert caught.value.param == param


def test_session_object_is_the_ga_shape() -> None:
    shown = session_object("sess_1", SessionConfig(turn_detection=None), "whisper:tiny.en")
    assert shown["type"] == "transcription"
    assert shown["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert shown["audio"]["input"]["turn_detection"] is None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_decode_pcm16() -> None:
    pcm = decode_append(_b64(np.array([0, 16384, -32768], "<i2").tobytes()), "audio/pcm")
    assert pcm.tolist() == [0.0, 0.5, -1.0]


def test_decode_g711() -> None:
    # Reference values of the ITU tables: mu-law 0xFF is 0 and 0x00 is -32124; A-law 0xD5 is +8
    # and 0x55 is -8, 0xAA is +32256.
    ulaw = decode_append(_b64(bytes([0xFF, 0x00, 0x80])), "audio/pcmu") * 32768
    assert ulaw.tolist() == [0.0, -32124.0, 32124.0]
    alaw = decode_append(_b64(bytes([0xD5, 0x55, 0xAA])), "audio/pcma") * 32768
    assert alaw.tolist() == [8.0, -8.0, 32256.0]


@pytest.mark.parametrize("audio", ["***", 5, _b64(b"\x00\x01\x02")])
def test_decode_refuses_bad_audio(audio: object) -> None:
    with pytest.raises(EventError):
        decode_append(audio, "audio/pcm")


# ---------------------------------------------------------------- the detector, fake VAD


def _detector(threshold: float = 0.5, prefix: int = 300, silence: int = 500) -> TurnDetector:
    return TurnDetector(TurnDetection(threshold, prefix, silence), frame_ms=32)


def test_a_turn_starts_with_prefix_padding_and_ends_after_the_silence() -> None:
    detector = _detector()
    probs = [0.1] * 20 + [0.9] * 30 + [0.05] * 16 + [0.05] * 5
    events = detector.feed(probs)
    # Speech at frame 20 (640 ms), padded by 300 ms; 16 silent frames = 512 ms >= 500 ms.
    assert events == [SpeechStarted(340), SpeechStopped((20 + 30 + 16) * 32)]


def test_threshold_decides_what_is_speech() -> None:
    assert _detector(threshold=0.95).feed([0.9] * 50) == []
    assert _detector(threshold=0.8).feed([0.9] * 3) == [SpeechStarted(0)]


def test_hysteresis_keeps_a_dip_inside_the_turn() -> None:
    detector = _detector(threshold=0.5, silence=100)
    # 0.4 is below the threshold but above threshold - 0.15: still speech.
    assert detector.feed([0.9] * 5 + [0.4] * 20) == [SpeechStarted(0)]
    assert detector.speaking


def test_short_pauses_do_not_end_a_turn() -> None:
    detector = _detector(silence=500)
    probs = [0.9] * 10 + [0.0] * 10 + [0.9] * 10 + [0.0] * 16
    events = detector.feed(probs)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]


def test_two_turns_and_padding_never_reaches_into_the_previous_turn() -> None:
    detector = _detector(prefix=1000, silence=320)
    events = detector.feed([0.9] * 10 + [0.0] * 10 + [0.0] * 2 + [0.9] * 5 + [0.0] * 10)
    assert events == [
        SpeechStarted(0),
        SpeechStopped(20 * 32),
        SpeechStarted(20 * 32),  # 1000 ms of padding would reach back before the first's end
        SpeechStopped(37 * 32),
    ]


def test_fed_in_pieces_equals_fed_whole() -> None:
    probs = [0.1] * 7 + [0.8] * 13 + [0.0] * 20 + [0.7] * 9 + [0.0] * 20
    whole = _detector().feed(probs)
    pieces = _detector()
    got = []
    for start in range(0, len(probs), 5):
        got += pieces.feed(probs[start : start + 5])
    assert got == whole
    assert len(whole) == 4


def test_skip_to_ends_an_open_turn_after_a_manual_commit() -> None:
    detector = _detector()
    detector.feed([0.9] * 10)
    detector.skip_to(10 * 32)
    assert not detector.speaking
    assert detector.feed([0.9] * 2) == [SpeechStarted(320)]

"""Unit tests: speech spans by frame energy, and seams suspect for speech no word covers."""

from __future__ import annotations

import numpy as np
import pytest
from vox_control.streaming.merge import Stitcher, WindowTranscript
from vox_control.streaming.voiced import speech_level, voiced_spans
from vox_protocol import Segment, Word

RATE = 16_000


def _tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_spans_are_where_the_audio_is_loud_at_absolute_times() -> None:
    rng = np.random.default_rng(0)
    noise = lambda s: (rng.standard_normal(round(s * RATE)) * 1e-3).astype(np.float32)  # noqa: E731
    audio = np.concatenate([noise(1.0), _tone(0.5, 0.3), noise(0.4), _tone(0.3, 0.1), noise(1.0)])
    level = speech_level(audio, RATE)
    spans = voiced_spans(audio, RATE, 10.0, level)
    assert len(spans) == 2
    assert spans[0] == pytest.approx((11.0, 11.5), abs=0.021)
    assert spans[1] == pytest.approx((11.9, 12.2), abs=0.021)


def test_digital_silence_has_no_speech() -> None:
    silence = np.zeros(RATE, dtype=np.float32)
    assert voiced_spans(silence, RATE, 0.0, speech_level(silence, RATE)) == []


def _window(start: float, end: float, words: list[tuple[str, float, float]]) -> WindowTranscript:
    rel = [Word(start=s - start, end=e - start, word=f" {w}") for w, s, e in words]
    text = "".join(w.word for w in rel)
    return WindowTranscript(start, end, [Segment(rel[0].start, rel[-1].end, text, words=rel)])


def test_speech_that_no_kept_word_covers_makes_a_seam_suspect() -> None:
    # Seen in CI: A ended at "mud." and heard "its owner called it back" as "a"; B began
    # at "and". No pause between kept words is a second long: only the audio tells.
    a = _window(0, 10, [("the", 6.8, 7.0), ("mud.", 7.0, 7.3), ("a", 7.9, 8.2)])
    b = _window(9, 19, [("and", 9.0, 9.15), ("wiped", 9.9, 10.2), ("paws", 10.4, 10.8)])
    stitcher = Stitcher()
    stitcher.add(a)
    speech = [(6.8, 7.35), (7.5, 9.6), (9.9, 10.8)]
    assert not stitcher.suspect(b)  # the words alone look like an ordinary seam
    assert stitcher.suspect(b, speech)
    covered = [(6.8, 7.35), (7.9, 8.2), (9.0, 9.15), (9.9, 10.8)]
    assert not stitcher.suspect(b, covered)  # every bit of speech has a word on it

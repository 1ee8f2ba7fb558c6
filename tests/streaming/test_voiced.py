"""Unit tests: speech spans by frame energy."""

from __future__ import annotations

import numpy as np
import pytest
from vox_control.sessions.voiced import speech_level, voiced_spans

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

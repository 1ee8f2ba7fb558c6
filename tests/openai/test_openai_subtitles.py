"""srt, vtt and verbose_json renderings, checked with real subtitle parsers."""

from __future__ import annotations

import io
from datetime import timedelta

import srt
import webvtt
from vox_control.text.subtitles import render, timestamp, verbose_json
from vox_protocol import Segment, Transcript, Word

TRANSCRIPT = Transcript(
    id=1,
    text="Hello there. General Kenobi.",
    language="en",
    duration=3725.5,
    segments=[
        Segment(start=0.0, end=1.5, text=" Hello there.", words=[Word(0.0, 0.6, " Hello")]),
        Segment(start=1.5, end=1.5, text=" General\n\nKenobi."),  # zero length, blank line
        Segment(start=3723.25, end=3725.5, text=" "),  # empty: no cue
    ],
)


def test_timestamps() -> None:
    assert timestamp(3723.2506, ",") == "01:02:03,251"
    assert timestamp(0, ".") == "00:00:00.000"
    assert timestamp(-1, ".") == "00:00:00.000"


def test_srt_parses() -> None:
    cues = list(srt.parse(render(TRANSCRIPT, "srt")))
    assert [c.content for c in cues] == ["Hello there.", "General Kenobi."]
    assert cues[0].end == timedelta(seconds=1.5)
    assert cues[1].end > cues[1].start


def test_vtt_parses() -> None:
    text = render(TRANSCRIPT, "vtt")
    assert text.startswith("WEBVTT\n\n")
    cues = webvtt.from_buffer(io.StringIO(text)).captions
    assert [c.text for c in cues] == ["Hello there.", "General Kenobi."]
    assert cues[0].start == "00:00:00.000"
    assert cues[0].end == "00:00:01.500"


def test_verbose_json_granularities() -> None:
    both = verbose_json(TRANSCRIPT, "transcribe", words=True, segments=True)
    assert both["language"] == "english"
    assert both["words"] == [{"word": "Hello", "start": 0.0, "end": 0.6}]
    assert [s["id"] for s in both["segments"]] == [0, 1, 2]
    words_only = verbose_json(TRANSCRIPT, "translate", words=True, segments=False)
    assert "segments" not in words_only
    assert words_only["task"] == "translate"

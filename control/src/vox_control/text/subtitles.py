"""Transcript renderings OpenAI offers: text, json, verbose_json, srt and vtt."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vox_protocol import Segment, Transcript

TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS,mmm`` (srt) or ``HH:MM:SS.mmm`` (vtt), rounded to the millisecond."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(segments: Iterable[Segment]) -> list[tuple[float, float, str]]:
    cues = []
    for s in segments:
        text = " ".join(s.text.split())  # a blank line would end the cue early
        if text:
            # Players reject cues that end before they start; whisper can emit zero-length ones.
            cues.append((s.start, max(s.end, s.start + 0.001), text))
    return cues


def to_srt(segments: Iterable[Segment]) -> str:
    blocks = [
        f"{i}\n{timestamp(start, ',')} --> {timestamp(end, ',')}\n{text}\n"
        for i, (start, end, text) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Iterable[Segment]) -> str:
    blocks = [
        f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{text}\n"
        for start, end, text in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def verbose_json(
    transcript: Transcript, task: str, *, words: bool, segments: bool
) -> dict[str, Any]:
    """OpenAI's verbose_json: segments (default) and/or words, as timestamp_granularities ask."""
    body: dict[str, Any] = {
        "task": task,
        "language": _language_name(transcript.language),
        "duration": transcript.duration,
        "text": transcript.text,
    }
    if words:
        body["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end}
            for s in transcript.segments
            for w in s.words
        ]
    if segments:
        body["segments"] = [
            {
                "id": i,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob if s.avg_logprob is not None else 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": s.no_speech_prob if s.no_speech_prob is not None else 0.0,
            }
            for i, s in enumerate(transcript.segments)
        ]
    return body


def render(transcript: Transcript, fmt: str) -> str:
    """The text body of the text, srt and vtt formats."""
    if fmt == "srt":
        return to_srt(transcript.segments)
    if fmt == "vtt":
        return to_vtt(transcript.segments)
    return transcript.text + "\n"


# OpenAI's verbose_json names the language in English ("english"), not with its code.
_LANGUAGES = {
    "en": "english",
    "de": "german",
    "es": "spanish",
    "fr": "french",
    "it": "italian",
    "ja": "japanese",
    "ko": "korean",
    "nl": "dutch",
    "pl": "polish",
    "pt": "portuguese",
    "ru": "russian",
    "sv": "swedish",
    "tr": "turkish",
    "uk": "ukrainian",
    "zh": "chinese",
    "ar": "arabic",
    "hi": "hindi",
}


def _language_name(code: str | None) -> str:
    if not code:
        return ""
    return _LANGUAGES.get(code, code)

"""Stitch the transcripts of overlapping windows into one, by word timestamps, at each seam.

Two neighbouring windows A and B share ``[B.start, A.end)``. The seam is cut at the middle of
that overlap, where both windows have at least half the overlap of context on either side:
A keeps the words whose centre lies before the cut, B the words whose centre lies after it.
Whisper's timestamps for one word differ a little between the two windows, so a word near
the cut could fall on the far side in both (lost) or the near side in both (doubled). Three
repairs make each boundary word appear exactly once:

* rescue: a word of B before the cut that starts after A's last kept word ended is speech A
  did not keep (it put the word past the cut, or missed it): B keeps it;
* mirror rescue: a word of A past the cut that ends before B's first kept word starts is
  speech B missed (cut off at its start): A keeps it;
* dedupe: when A's last kept word and B's first kept word are the same word and their time
  spans overlap, they are one utterance seen twice: B's copy is dropped. So is a copy that B
  placed in a pause (where the audio has no speech): a word near a clip's start is often
  stretched or shifted into the silence after it.

A phrase spoken across the seam can still be lost by both windows: A hears it cut off and
leaves it out (or stretches one word over it, ending with "waited for the" as a 1.8 s "the"),
and B starts after it or skips it at its abrupt start. ``Stitcher.suspect`` finds such a seam
(over a second between the words both kept, a word that lasts over 0.85 s near it, or
a third of a second of speech near it that no kept word covers: A may drop its last sentence); the
caller then transcribes the audio around the cut once more and stitches that clip in between
as an extra window, whose seams with A and B lie well inside all three.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vox_protocol import Segment, Word

# Slack for timestamps that disagree slightly between windows (Whisper's are 20 ms steps).
_SLACK = 0.06
_NORMAL = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class WindowTranscript:
    """One window's segments; their times are relative to the window's ``start`` (seconds)."""

    start: float
    end: float
    segments: Sequence[Segment]


@dataclass(frozen=True)
class Voicing:
    """Where the audio from ``start`` to ``end`` has speech (``spans``; absolute seconds)."""

    start: float
    end: float
    spans: Sequence[tuple[float, float]] = ()

    def silent(self, start: float, end: float) -> bool:
        """Whether ``[start, end]`` was checked and lies wholly in a pause, beyond a word's
        looseness from any speech (a word Whisper stretched over a pause onto speech does not)."""
        return (
            self.start <= start
            and end <= self.end
            and not any(a - _WORD_PAD < end and start < b + _WORD_PAD for a, b in self.spans)
        )


@dataclass(frozen=True)
class _Unit:
    """A word (or a whole segment that came without words), in absolute seconds."""

    start: float
    end: float
    text: str
    word: Word | None
    window: int
    segment: int

    @property
    def center(self) -> float:
        return (self.start + self.end) / 2


def normalize(word: str) -> str:
    return _NORMAL.sub("", word.lower())


def _units(index: int, window: WindowTranscript) -> list[_Unit]:
    out: list[_Unit] = []
    offset = window.start
    for s, segment in enumerate(window.segments):
        if segment.words:
            for w in segment.words:
                shifted = Word(
                    start=round(w.start + offset, 3),
                    end=round(w.end + offset, 3),
                    word=w.word,
                    probability=w.probability,
                )
                out.append(_Unit(shifted.start, shifted.end, w.word, shifted, index, s))
        elif segment.text.strip():
            out.append(
                _Unit(segment.start + offset, segment.end + offset, segment.text, None, index, s)
            )
    return out


def _seam(
    before: list[_Unit], after: list[_Unit], cut: float, voicing: Voicing | None = None
) -> tuple[list[_Unit], list[_Unit]]:
    """Cut the earlier window's units and the later one's at ``cut``, then repair the seam."""
    kept_a = [u for u in before if u.center < cut]
    last_end = kept_a[-1].end if kept_a else -math.inf
    kept_b = [u for u in after if u.center >= cut or u.start >= last_end - _SLACK]
    # The mirror rescue: B starts half an overlap before the cut, so a word cut off at B's
    # very start is often missing from B; if A heard it past the cut and B has nothing
    # until after it ended, A keeps it.
    first_b = kept_b[0].start if kept_b else math.inf
    kept_a += [u for u in before if u.center >= cut and u.end <= first_b + _SLACK]
    return kept_a, _dedupe(kept_a, kept_b, voicing)


# A run of two or more of B's words repeating A's last ones and starting within this of
# where A's copy ended is one utterance seen twice (Whisper places words near a window's edge
# loosely), not said twice. A single word must overlap A's copy: "that that" is real speech.
_REPEAT = 0.5


def _alike(x: str, y: str) -> bool:
    """The same word, perhaps heard cut off once ("across" / "cross")."""
    x, y = normalize(x), normalize(y)
    if not x or not y:
        return False
    short, long = sorted((x, y), key=len)
    return x == y or (len(short) >= 3 and (long.startswith(short) or long.endswith(short)))


def _dedupe(kept_a: list[_Unit], kept_b: list[_Unit], voicing: Voicing | None) -> list[_Unit]:
    """Drop B's first words when they repeat A's last ones in the same place (up to three),
    or in a pause of the audio, where nobody said them twice."""
    for k in range(min(3, len(kept_a), len(kept_b)), 0, -1):
        run_a, run_b = kept_a[-k:], kept_b[:k]
        reach = _REPEAT if k > 1 else _SLACK
        placed = run_b[0].start < run_a[-1].end + reach or (
            voicing is not None and all(voicing.silent(b.start, b.end) for b in run_b)
        )
        if placed and all(_alike(a.text, b.text) for a, b in zip(run_a, run_b, strict=True)):
            return kept_b[k:]
    return kept_b


# A pause longer than this across a seam may be speech that neither window kept: Whisper
# drops a phrase cut off at a window's end, and may skip one that starts just before the next.
SEAM_GAP = 1.0
# No spoken word lasts this long: Whisper stretches one over speech it did not transcribe.
# (The longest of 3,000 words in 16 transcripts of the test recording: 0.78 s, "laughing,";
# the stretched ones seen in CI: 1.8 s and, by the words lost around it, about 1 s.)
STRETCHED = 0.85
# Speech near the cut that no kept word covers, past this, was not transcribed: Whisper drops
# a sentence cut off at a window's end, and may skip the next window's first words. (On 40
# seams of whole transcripts at most 0.1 s was uncovered; with the earlier window's last
# 1.3 s of words taken away, 0.46-1.06 s.)
UNHEARD = 0.3
SEAM_NEAR = 2.0  # seconds either side of the cut that are checked
_WORD_PAD = 0.15  # word timestamps are loose by about this much


def _unheard(words: list[_Unit], voiced: Sequence[tuple[float, float]], cut: float) -> float:
    """Seconds of ``voiced`` within ``SEAM_NEAR`` of the cut that no word's span covers."""
    covered = sorted((u.start - _WORD_PAD, u.end + _WORD_PAD) for u in words)
    total = 0.0
    for start, end in voiced:
        t, end = max(start, cut - SEAM_NEAR), min(end, cut + SEAM_NEAR)
        for a, b in covered:
            if b <= t:
                continue
            if a >= end:
                break
            total += max(0.0, a - t)
            t = max(t, b)
        total += max(0.0, end - t)
    return total


class Stitcher:
    """Takes window transcripts in order; gives the merged segments at any time."""

    def __init__(self) -> None:
        self._done: list[_Unit] = []
        self._segments: dict[tuple[int, int], Segment] = {}
        self._tail: list[_Unit] | None = None
        self._tail_end = 0.0
        self._count = 0
        self._extra = 0

    @property
    def windows(self) -> int:
        """Windows of the session's plan stitched so far (extra seam windows not counted)."""
        return self._count - self._extra

    def cut(self, window: WindowTranscript) -> float:
        """Where the seam between the stitch so far and ``window`` is cut (seconds)."""
        return (window.start + self._tail_end) / 2

    def suspect(self, window: WindowTranscript, voicing: Voicing | None = None) -> bool:
        """Whether stitching ``window`` next may lose speech at the seam (see the module).
        ``voicing``: where the audio around the cut has speech."""
        if not self._tail:
            return False
        cut = self.cut(window)
        after = _units(self._count, window)
        kept_a, kept_b = _seam(self._tail, after, cut, voicing)
        if not kept_a or not kept_b:
            return False  # one side heard nothing near the seam: silence, not a lost phrase
        if kept_b[0].start - kept_a[-1].end > SEAM_GAP:
            return True
        voiced = voicing.spans if voicing is not None else ()
        if _unheard([*kept_a, *kept_b], voiced, cut) > UNHEARD:
            return True
        return any(
            u.word is not None and u.end - u.start > STRETCHED and abs(u.center - cut) < SEAM_NEAR
            for u in (*self._tail, *after)
        )

    def add(
        self, window: WindowTranscript, *, extra: bool = False, voicing: Voicing | None = None
    ) -> None:
        """Stitch the next window; an ``extra`` one is the audio around the last seam
        transcribed again (it is stitched like any other, but is not one of the plan's).
        ``voicing``: where the audio around the seam has speech, if it was measured."""
        index = self._count
        self._count += 1
        self._extra += extra
        for s, segment in enumerate(window.segments):
            self._segments[(index, s)] = segment
        units = _units(index, window)
        if self._tail is None:
            self._tail = units
        else:
            kept_a, kept_b = _seam(self._tail, units, self.cut(window), voicing)
            self._done.extend(kept_a)
            self._tail = kept_b
        self._tail_end = window.end

    def segments(self) -> list[Segment]:
        """The stitched transcript so far (the last window's words are provisional)."""
        return _group([*self._done, *(self._tail or [])], self._segments)

    def text(self) -> str:
        return "".join(s.text for s in self.segments()).strip()


def _group(units: list[_Unit], sources: dict[tuple[int, int], Segment]) -> list[Segment]:
    """Rebuild segments from runs of kept units that came from the same source segment."""
    out: list[Segment] = []
    run: list[_Unit] = []

    def close() -> None:
        if not run:
            return
        key = (run[0].window, run[0].segment)
        source = sources[key]
        words = [u.word for u in run if u.word is not None]
        whole = (not source.words and len(run) == 1) or len(words) == len(source.words)
        out.append(
            Segment(
                start=round(run[0].start, 3),
                end=round(run[-1].end, 3),
                text=source.text if whole else "".join(u.text for u in run),
                words=words,
                avg_logprob=source.avg_logprob,
                no_speech_prob=source.no_speech_prob,
            )
        )
        run.clear()

    for unit in units:
        if run and (unit.window, unit.segment) != (run[-1].window, run[-1].segment):
            close()
        run.append(unit)
    close()
    return out


def merge_windows(windows: Sequence[WindowTranscript]) -> list[Segment]:
    """Stitch a whole list of window transcripts (in order) into one list of segments."""
    stitcher = Stitcher()
    for window in windows:
        stitcher.add(window)
    return stitcher.segments()

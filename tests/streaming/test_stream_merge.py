"""The word-timestamp stitch: every word at a window seam appears exactly once."""

from __future__ import annotations

import random

import pytest
from vox_control.sessions.merge import Stitcher, Voicing, WindowTranscript, merge_windows
from vox_protocol import Segment, Word


def _window(start: float, end: float, words: list[tuple[str, float, float]]) -> WindowTranscript:
    """A window whose single segment holds ``words`` given in absolute seconds."""
    rel = [Word(start=s - start, end=e - start, word=f" {w}") for w, s, e in words]
    text = "".join(w.word for w in rel)
    segments = [Segment(start=rel[0].start, end=rel[-1].end, text=text, words=rel)] if rel else []
    return WindowTranscript(start, end, segments)


def _words(segments: list[Segment]) -> list[str]:
    return [w.word.strip() for s in segments for w in s.words]


def test_plain_cut_at_the_overlap_midpoint() -> None:
    a = _window(0, 10, [("one", 1, 2), ("two", 8.9, 9.3), ("three", 9.6, 9.95)])
    b = _window(9, 19, [("two", 9.0, 9.3), ("three", 9.6, 10.0), ("four", 12, 13)])
    merged = merge_windows([a, b])
    assert _words(merged) == ["one", "two", "three", "four"]
    assert merged[-1].words[-1].start == pytest.approx(12)  # absolute times


def test_word_on_the_cut_seen_on_the_near_side_twice_is_kept_once() -> None:
    # Cut at 9.5: A puts "cut" just before it, B just after it.
    a = _window(0, 10, [("before", 8.5, 9.0), ("cut", 9.2, 9.7)])
    b = _window(9, 19, [("before", 8.5, 9.0), ("cut", 9.3, 9.8), ("after", 10, 10.5)])
    assert _words(merge_windows([a, b])) == ["before", "cut", "after"]


def test_word_on_the_cut_seen_on_the_far_side_twice_is_not_lost() -> None:
    # A puts "cut" after 9.5 (not kept), B before it: B rescues it.
    a = _window(0, 10, [("before", 8.5, 9.0), ("cut", 9.3, 9.8)])
    b = _window(9, 19, [("before", 8.5, 9.0), ("cut", 9.2, 9.7), ("after", 10, 10.5)])
    assert _words(merge_windows([a, b])) == ["before", "cut", "after"]


def test_word_one_window_missed_near_the_cut_comes_from_the_other() -> None:
    a = _window(0, 10, [("before", 8.5, 9.0)])  # A dropped "lost" at the edge
    b = _window(9, 19, [("before", 8.5, 9.0), ("lost", 9.1, 9.4), ("after", 10, 10.5)])
    assert _words(merge_windows([a, b])) == ["before", "lost", "after"]


def test_word_the_later_window_cut_off_at_its_start_comes_from_the_earlier() -> None:
    # Cut at 9.5: A heard "prepared" past the cut; B (starting at 9.0) lost it at its edge.
    a = _window(0, 10, [("he", 8.9, 9.1), ("prepared", 9.3, 9.9)])
    b = _window(9, 19, [("he", 8.9, 9.1), ("a", 10.0, 10.1), ("list", 10.2, 10.5)])
    assert _words(merge_windows([a, b])) == ["he", "prepared", "a", "list"]


def test_a_real_repetition_is_not_taken_for_a_duplicate() -> None:
    a = _window(0, 10, [("that", 8.8, 9.1), ("that", 9.2, 9.45)])
    b = _window(9, 19, [("that", 9.2, 9.45), ("that", 9.55, 9.8), ("is", 10, 10.2)])
    # Truth: that(8.8) that(9.2) that(9.55) is.
    assert _words(merge_windows([a, b])) == ["that", "that", "that", "is"]


def test_segments_without_words_are_cut_by_their_centre() -> None:
    a = WindowTranscript(0, 10, [Segment(0, 4, " first."), Segment(8, 10, " seam half.")])
    b = WindowTranscript(9, 19, [Segment(0, 1, " seam half."), Segment(1, 5, " second.")])
    merged = merge_windows([a, b])
    assert [s.text for s in merged] == [" first.", " seam half.", " second."]


def test_partly_kept_segment_text_is_rebuilt_from_its_words() -> None:
    a = _window(0, 10, [("alpha", 5, 6), ("beta", 9.6, 9.9)])
    merged = Stitcher()
    merged.add(a)
    merged.add(_window(9, 19, [("beta", 9.6, 9.9), ("gamma", 11, 12)]))
    assert merged.text() == "alpha beta gamma"
    assert merged.windows == 2


@pytest.mark.parametrize("seed", range(40))
def test_random_speech_through_many_seams_keeps_every_word_once(seed: int) -> None:
    rng = random.Random(seed)
    truth: list[tuple[str, float, float]] = []
    t = 0.2
    while t < 95:
        length = rng.uniform(0.12, 0.7)
        truth.append((f"w{len(truth)}", t, t + length))
        t += length + rng.choice([0.0, 0.02, 0.05, 0.1, 0.4])
    chunk, overlap = 10.0, rng.choice([0.5, 1.0, 2.0])
    windows = []
    start = 0.0
    while start < t:
        end = min(start + chunk, t + 0.5)
        seen = []
        for w, s, e in truth:
            inside = min(e, end) - max(s, start)
            if inside >= 0.5 * (e - s):  # the model hears most of it: it transcribes it
                jitter = rng.uniform(-0.06, 0.06)
                seen.append((w, max(start, s + jitter), min(end, e + jitter)))
        windows.append(_window(start, end, seen))
        start += chunk - overlap
    assert _words(merge_windows(windows)) == [w for w, _, _ in truth]


def test_a_phrase_both_windows_dropped_makes_the_seam_suspect_and_an_extra_window_restores_it() -> (
    None
):
    # Seen in CI: "for morning light" spoke across the seam at 9.5; A stopped at "waited"
    # and B began at "children". Only a third transcription of the seam's audio has it.
    a = _window(0, 10, [("the", 6.0, 6.3), ("mast", 6.4, 7.0), ("waited", 7.1, 7.5)])
    b = _window(9, 19, [("children", 10.4, 10.9), ("asked", 11.0, 11.4)])
    stitcher = Stitcher()
    stitcher.add(a)
    assert stitcher.cut(b) == 9.5
    assert stitcher.suspect(b)  # 2.9 s between the words the two windows keep
    again = _window(
        7.0,
        12.0,
        [
            ("waited", 7.1, 7.5),
            ("for", 8.6, 8.8),
            ("morning", 8.9, 9.3),
            ("light", 9.4, 9.9),
            ("children", 10.4, 10.9),
            ("ask", 11.0, 12.0),
        ],
    )
    stitcher.add(again, extra=True)
    stitcher.add(b)
    assert _words(stitcher.segments()) == [
        "the", "mast", "waited", "for", "morning", "light", "children", "asked"
    ]  # fmt: skip
    assert stitcher.windows == 2  # the extra window is not one of the plan's


def test_a_word_stretched_over_the_seam_makes_it_suspect() -> None:
    # Seen in CI: A ended "waited for the", its "the" lasting 1.8 s over "morning light";
    # B began after the phrase. The gap between kept words is nil, the stretch tells.
    a = _window(0, 10, [("waited", 7.8, 7.9), ("for", 7.9, 8.2), ("the", 8.2, 9.98)])
    b = _window(9, 19, [("The", 9.0, 9.26), ("children", 9.26, 9.52), ("listened", 9.52, 9.96)])
    stitcher = Stitcher()
    stitcher.add(a)
    assert stitcher.suspect(b)


def test_an_extra_window_adds_nothing_twice_where_it_hears_the_edges_again() -> None:
    # Seen in CI: the clip began mid-phrase and placed "his shop" late, in the pause after
    # it, and heard "across" cut off as "cross": both repeat words that A already kept.
    a = _window(0, 10, [("opened", 5.8, 6.2), ("his", 6.3, 6.5), ("shop.", 6.6, 7.0)])
    b = _window(9, 19, [("the", 10.5, 10.6), ("road", 10.7, 11.0)])
    again = _window(
        7.0,
        12.0,
        [("his", 7.0, 7.3), ("shop,", 7.4, 7.8), ("the", 10.5, 10.6), ("road", 10.7, 11.0)],
    )
    stitcher = Stitcher()
    stitcher.add(a)
    stitcher.add(again, extra=True)
    stitcher.add(b)
    assert _words(stitcher.segments()) == ["opened", "his", "shop.", "the", "road"]
    a = _window(0, 10, [("library", 9.0, 9.4), ("across", 9.4, 9.8)])
    b = _window(9, 19, [("cross", 9.84, 10.1), ("the", 10.1, 10.3)])
    assert _words(merge_windows([a, b])) == ["library", "across", "the"]


def test_an_ordinary_seam_is_not_suspect() -> None:
    stitcher = Stitcher()
    stitcher.add(_window(0, 10, [("end", 8.6, 9.1)]))
    assert not stitcher.suspect(_window(9, 19, [("next", 9.9, 10.3)]))  # 0.8 s apart
    assert not stitcher.suspect(_window(9, 19, []))  # silence after the seam: nothing lost


def test_speech_that_no_kept_word_covers_makes_a_seam_suspect() -> None:
    # Seen in CI: A ended at "mud." and heard "its owner called it back" as "a"; B began
    # at "and". No pause between kept words is a second long: only the audio tells.
    a = _window(0, 10, [("the", 6.8, 7.0), ("mud.", 7.0, 7.3), ("a", 7.9, 8.2)])
    b = _window(9, 19, [("and", 9.0, 9.15), ("wiped", 9.9, 10.2), ("paws", 10.4, 10.8)])
    stitcher = Stitcher()
    stitcher.add(a)
    speech = Voicing(7.5, 11.5, [(6.8, 7.35), (7.5, 9.6), (9.9, 10.8)])
    assert not stitcher.suspect(b)  # the words alone look like an ordinary seam
    assert stitcher.suspect(b, speech)
    covered = Voicing(7.5, 11.5, [(6.8, 7.35), (7.9, 8.2), (9.0, 9.15), (9.9, 10.8)])
    assert not stitcher.suspect(b, covered)  # every bit of speech has a word on it


def test_a_copy_the_extra_window_placed_in_the_pause_is_dropped() -> None:
    # Seen in CI, "his shop. shop. He let": the clip began mid-sentence, stretched "his" and
    # put "shop." in the silence after the sentence, too late to overlap A's copy. The audio
    # says nobody spoke there.
    a = _window(0, 6.08, [("opened", 3.3, 3.66), ("his", 3.66, 3.92), ("shop.", 3.92, 4.2)])
    b = _window(5.08, 11.1, [("He", 6.56, 7.08), ("let", 7.08, 7.28), ("the", 7.28, 7.5)])
    again = _window(
        3.08,
        8.08,
        [("open", 3.4, 3.64), ("his", 3.64, 4.5), ("shop.", 5.78, 5.78), ("He", 6.74, 7.16)],
    )
    voicing = Voicing(3.58, 7.58, [(3.0, 4.33), (6.6, 7.58)])
    stitched = []
    for heard in (None, voicing):
        stitcher = Stitcher()
        stitcher.add(a)
        assert stitcher.suspect(b, heard)  # 2.4 s between the kept words
        stitcher.add(again, extra=True, voicing=heard)
        stitcher.add(b, voicing=heard)
        stitched.append(_words(stitcher.segments()))
    assert stitched[0] == ["opened", "his", "shop.", "shop.", "He", "let", "the"]  # unheard
    assert stitched[1] == ["opened", "his", "shop.", "He", "let", "the"]


@pytest.mark.parametrize("start", [9.3, 8.7])
def test_a_repeated_word_that_was_spoken_is_kept_beside_a_pause(start: float) -> None:
    # "... said that. [pause] That ...": B's "That" is a new word, on speech, past the pause,
    # whether Whisper placed it there or stretched it back over the pause (centre in it).
    a = _window(0, 10, [("said", 8.0, 8.3), ("that.", 8.3, 8.6)])
    b = _window(9, 19, [("That", start, 9.5), ("is", 9.6, 9.8)])
    voicing = Voicing(7.5, 11.5, [(8.0, 8.65), (9.3, 9.85)])
    stitcher = Stitcher()
    stitcher.add(a)
    stitcher.add(b, voicing=voicing)
    assert _words(stitcher.segments()) == ["said", "that.", "That", "is"]

"""WindowPlanner: regular overlapping windows, the final window, and what may be dropped; with
a VAD's pauses, windows cut in the middle of a pause."""

from __future__ import annotations

import itertools
import random

import pytest
from vox_control.sessions.windows import Pauses, Window, WindowPlanner


def test_regular_windows_overlap_and_come_when_complete() -> None:
    planner = WindowPlanner(chunk=100, overlap=10)
    assert planner.ready(99) == []
    assert planner.ready(100) == [Window(0, 0, 100)]
    assert planner.ready(189) == []
    assert planner.ready(400) == [Window(1, 90, 190), Window(2, 180, 280), Window(3, 270, 370)]


def test_final_window_overlaps_like_a_regular_one() -> None:
    planner = WindowPlanner(chunk=100, overlap=10)
    planner.ready(250)  # windows at 0 and 90
    assert planner.finish(250) == [Window(2, 180, 250)]


def test_a_short_final_tail_reaches_back_to_a_third_of_a_chunk() -> None:
    planner = WindowPlanner(chunk=99, overlap=9)
    planner.ready(200)  # windows at 0 and 90 (ends 189)
    assert planner.finish(200) == [Window(2, 167, 200)]  # not 180..200: 20 samples alone


def test_final_window_starts_after_the_previous_one() -> None:
    planner = WindowPlanner(chunk=100, overlap=10)
    planner.ready(195)  # windows at 0 and 90 (ends 190): a 5-sample tail
    assert planner.finish(195) == [Window(2, 162, 195)]


def test_short_session_is_one_window_and_covered_tail_adds_none() -> None:
    assert WindowPlanner(100, 10).finish(42) == [Window(0, 0, 42)]
    assert WindowPlanner(100, 10).finish(0) == []
    planner = WindowPlanner(100, 10)
    assert planner.finish(100) == [Window(0, 0, 100)]


def test_every_sample_is_covered_and_keep_from_never_cuts_a_future_window() -> None:
    for total in range(0, 1000, 7):
        planner = WindowPlanner(chunk=100, overlap=20)
        windows: list[Window] = []
        kept = 0
        for arrived in range(0, total + 1, 13):
            for window in planner.ready(arrived):
                assert window.start >= kept
                windows.append(window)
            kept = planner.keep_from()
        for window in planner.finish(total):
            assert window.start >= kept
            windows.append(window)
        covered = set()
        for w in windows:
            covered.update(range(w.start, w.end))
        assert covered == set(range(total))
        assert all(b.start > a.start and b.start < a.end for a, b in itertools.pairwise(windows))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        WindowPlanner(100, 60)
    with pytest.raises(ValueError, match="chunk"):
        WindowPlanner(0, 0)


SPEECH, SILENCE = 0.9, 0.1


def pauses_of(*frames: float) -> Pauses:
    """10-sample frames, pauses of 3 frames or more."""
    pauses = Pauses(frame=10, min_pause=30)
    pauses.feed(frames)
    return pauses


def test_a_window_ends_in_the_middle_of_the_longest_pause_in_its_second_half() -> None:
    # silence at 50..80, 90..120 (its middle is past the chunk's end) and 30..70 (one too early)
    pauses = pauses_of(*[SPEECH] * 5, *[SILENCE] * 3, SPEECH, *[SILENCE] * 3, *[SPEECH] * 3)
    planner = WindowPlanner(chunk=100, overlap=10, pauses=pauses)
    assert planner.ready(200) == [Window(0, 0, 65)]
    assert planner.ready(200) == []  # the next needs the VAD to have heard 65..165
    pauses.feed([SPEECH] * 10)
    assert planner.ready(300) == [Window(1, 65, 165, after_pause=True)]


def test_the_next_window_starts_at_the_cut_without_overlap() -> None:
    pauses = pauses_of(*[SPEECH] * 6, *[SILENCE] * 3, *[SPEECH] * 20)
    planner = WindowPlanner(chunk=100, overlap=10, pauses=pauses)
    assert planner.ready(290) == [
        Window(0, 0, 75),
        Window(1, 75, 175, after_pause=True),
        Window(2, 165, 265),  # no pause in 215..265: a regular, overlapping window
    ]
    assert planner.finish(290) == [Window(3, 255, 290)]


def test_the_longest_pause_wins_and_the_latest_of_equals() -> None:
    frames = [SPEECH] * 10 + [SILENCE] * 4 + [SPEECH] * 2 + [SILENCE] * 3 + [SPEECH] * 11
    assert WindowPlanner(200, 10, pauses_of(*frames)).ready(300)[0] == Window(0, 0, 120)
    frames = [SPEECH] * 10 + [SILENCE] * 3 + [SPEECH] * 2 + [SILENCE] * 3 + [SPEECH] * 12
    assert WindowPlanner(200, 10, pauses_of(*frames)).ready(300)[0] == Window(0, 0, 165)


def test_no_cut_at_a_pause_in_the_first_half_or_shorter_than_the_minimum() -> None:
    early = pauses_of(SPEECH, *[SILENCE] * 3, *[SPEECH] * 10)  # middle 25
    assert WindowPlanner(100, 10, early).ready(140) == [Window(0, 0, 100)]
    short = pauses_of(*[SPEECH] * 6, *[SILENCE] * 2, *[SPEECH] * 6)  # 20 samples
    assert WindowPlanner(100, 10, short).ready(140) == [Window(0, 0, 100)]


def test_a_pause_still_going_on_counts_and_windows_wait_for_the_vad() -> None:
    pauses = pauses_of(*[SPEECH] * 7)
    planner = WindowPlanner(chunk=100, overlap=10, pauses=pauses)
    assert planner.ready(1000) == []  # the VAD has heard 70 samples
    pauses.feed([SILENCE] * 4)  # silence 70..110, open
    assert planner.ready(1000) == [Window(0, 0, 90)]


def test_with_pauses_every_sample_is_covered_and_keep_from_never_cuts_a_future_window() -> None:
    rng = random.Random(7)
    for _ in range(200):
        total = rng.randrange(0, 1200)
        frames = [SILENCE if rng.random() < 0.3 else SPEECH for _ in range(total // 10 + 1)]
        planner = WindowPlanner(100, 20, Pauses(frame=10, min_pause=20))
        windows: list[Window] = []
        kept = 0
        for arrived in range(0, total + 1, 13):
            heard = frames[: arrived // 10][planner.pauses.covered // 10 :]  # type: ignore[union-attr]
            planner.pauses.feed(heard)  # type: ignore[union-attr]
            for window in planner.ready(arrived):
                assert window.start >= kept
                windows.append(window)
            kept = planner.keep_from()
        for window in planner.finish(total):
            assert window.start >= kept
            windows.append(window)
        covered = set()
        for w in windows:
            covered.update(range(w.start, w.end))
        assert covered == set(range(total))
        for a, b in itertools.pairwise(windows):
            assert b.start > a.start
            assert b.start == a.end if b.after_pause else b.start < a.end

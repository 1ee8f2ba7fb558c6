"""WindowPlanner: regular overlapping windows, the final window, and what may be dropped."""

from __future__ import annotations

import itertools

import pytest
from vox_control.sessions.windows import Window, WindowPlanner


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

"""SentenceSplitter: sentences leave as soon as they are certainly complete, and only then."""

from __future__ import annotations

import time

import pytest
from vox_control.text.sentences import SentenceSplitter, split_sentences


def test_sentence_leaves_once_the_next_one_begins() -> None:
    s = SentenceSplitter()
    assert s.feed("Hello there.") == []
    assert s.feed(" ") == []
    assert s.feed("How are") == ["Hello there."]
    assert s.feed(" you? Fine") == ["How are you?"]
    assert s.flush() == ["Fine"]
    assert s.flush() == []


def test_no_cut_before_lowercase_or_inside_an_ellipsis() -> None:
    s = SentenceSplitter()
    assert s.feed("It costs 3.5 dollars, e.g. this one. Wait... What? Yes.") == [
        "It costs 3.5 dollars, e.g. this one.",
        "Wait... What?",
    ]
    assert s.flush() == ["Yes."]


def test_quotes_close_the_sentence() -> None:
    s = SentenceSplitter()
    assert s.feed('He said "Stop." Then he left. And') == ['He said "Stop."', "Then he left."]


@pytest.mark.parametrize(
    "text",
    [
        "First one. Second one! Third, with a comma? Fourth... still fourth. Fifth 5. 6 six.",
        "Dr. Smith met Mr. Jones at 5 p.m. on Friday. Pi is 3.14! The U.S. team won. OK",
        "今日は晴れです。明日は雨でしょう！本当？はい",
    ],
)
def test_pieces_split_anywhere_give_the_same_sentences(text: str) -> None:
    whole = SentenceSplitter()
    expected = whole.feed(text) + whole.flush()
    for size in (1, 2, 3, 7, 13):
        s = SentenceSplitter()
        got: list[str] = []
        for i in range(0, len(text), size):
            got += s.feed(text[i : i + size])
        assert got + s.flush() == expected


def test_a_long_run_without_a_full_stop_is_cut_at_a_clause() -> None:
    s = SentenceSplitter(max_chars=50)
    text = "words " * 5 + "and a clause, " + "more words " * 5
    out = s.feed(text)
    assert out
    assert all(len(x) <= 50 for x in out)
    assert out[0].endswith(",")
    assert " ".join(out + s.flush()).split() == text.split()


def test_reset_drops_the_buffer() -> None:
    s = SentenceSplitter()
    s.feed("Half a sente")
    s.reset()
    assert s.pending == ""
    assert s.flush() == []


def test_abbreviations_and_times_do_not_end_a_sentence() -> None:
    text = "Dr. Smith met Mr. Jones at 5 p.m. on Friday. They talked."
    assert split_sentences(text) == ["Dr. Smith met Mr. Jones at 5 p.m. on Friday.", "They talked."]
    assert split_sentences("Dr. Smith met Mr. Jones at 5 p.m.") == [
        "Dr. Smith met Mr. Jones at 5 p.m."
    ]


def test_decimals_and_numbers_do_not_end_a_sentence() -> None:
    assert split_sentences("Pi is 3.14 and e is 2.718. Both are irrational.") == [
        "Pi is 3.14 and e is 2.718.",
        "Both are irrational.",
    ]


def test_an_abbreviation_waits_for_the_next_word() -> None:
    s = SentenceSplitter()
    assert s.feed("I met Mr. ") == []
    assert s.feed("Jones today. He") == ["I met Mr. Jones today."]


@pytest.mark.parametrize(
    ("text", "language", "sentences"),
    [
        (
            "今日は晴れです。明日は雨でしょう！本当？",
            None,
            ["今日は晴れです。", "明日は雨でしょう！", "本当？"],
        ),
        (
            "今天天气很好。明天会下雨吗？会的！",
            "zh",
            ["今天天气很好。", "明天会下雨吗？", "会的！"],
        ),
        ("今日は晴れです。明日も。", "ja-JP", ["今日は晴れです。", "明日も。"]),
    ],
)
def test_cjk_text_is_cut_at_its_full_stops(
    text: str, language: str | None, sentences: list[str]
) -> None:
    assert split_sentences(text, language) == sentences


def test_cjk_sentences_leave_while_streaming() -> None:
    s = SentenceSplitter()
    assert s.feed("今日は晴れです。") == []
    assert s.feed("明日") == ["今日は晴れです。"]


def test_hostile_text_is_cut_in_bounded_time() -> None:
    # pysbd alone takes minutes on 100k characters of "a. a. a."; the splitter's window
    # keeps it linear. A generous bound: the point is "seconds, not minutes".
    started = time.perf_counter()
    pieces = split_sentences("a. " * 20_000)
    assert time.perf_counter() - started < 30
    assert "".join(pieces).replace(" ", "") == "a." * 20_000

"""SentenceSplitter: sentences leave as soon as they are certainly complete, and only then."""

from __future__ import annotations

from vox_control.text.sentences import SentenceSplitter


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


def test_quotes_and_brackets_close_the_sentence() -> None:
    s = SentenceSplitter()
    assert s.feed('He said "stop." (Then he left.) And') == ['He said "stop."', "(Then he left.)"]


def test_pieces_split_anywhere_give_the_same_sentences() -> None:
    text = "First one. Second one! Third, with a comma? Fourth... still fourth. Fifth 5. 6 six."
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

"""validation.py: JSON depth measured without decoding, speech text and language checks."""

from __future__ import annotations

import json
import time

import pytest
from vox_control.errors import BadRequest
from vox_control.validation import (
    MAX_JSON_DEPTH,
    check_json_depth,
    check_language,
    check_text,
    json_depth,
)


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        ("", 0),
        ("1", 0),
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "\\"[[[", {"x": "}}}"}]', 2),  # brackets inside strings do not count
        ('"\\\\"', 0),  # an escaped backslash ends the string
    ],
)
def test_json_depth(raw: str, depth: int) -> None:
    assert json_depth(raw) == depth
    assert json_depth(raw.encode()) == depth


def test_depth_matches_a_decoder_on_nested_values() -> None:
    value: object = "x"
    for level in range(1, 40):
        value = [value] if level % 2 else {"k": value}
        assert json_depth(json.dumps(value)) == level


def test_deep_json_is_refused_in_bounded_time() -> None:
    check_json_depth("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    started = time.perf_counter()
    with pytest.raises(BadRequest) as caught:
        check_json_depth("[" * 1_000_000 + "]" * 1_000_000)
    assert caught.value.code == "invalid_json"
    # 2 MB of brackets: numpy passes, well under a second even on a loaded CI machine.
    assert time.perf_counter() - started < 5


def test_check_text() -> None:
    assert check_text("hi") == "hi"
    with pytest.raises(BadRequest) as caught:
        check_text("a\x00b", "text")
    assert caught.value.param == "text"
    with pytest.raises(BadRequest):
        check_text("   ")
    with pytest.raises(BadRequest):
        check_text("a" * 11, max_chars=10)


def test_check_language() -> None:
    assert check_language(None) is None
    assert check_language("auto") is None
    assert check_language("pt-BR") == "pt-BR"
    assert check_language("en", ["en", "de"]) == "en"
    for bad, supported in [("xx", ["en"]), ("english!", None), ("e" * 50, None)]:
        with pytest.raises(BadRequest) as caught:
            check_language(bad, supported)
        assert caught.value.param == "language"

"""Message parsing and validation errors carry the documented codes and close codes."""

from __future__ import annotations

import pytest
from vox_control.errors import ModelNotFound
from vox_control.sessions.channel import (
    BAD_CONFIG,
    MODEL_NOT_FOUND,
    POLICY,
    StreamError,
    convert,
    model_error,
    parse_message,
)
from vox_control.sessions.ws_stt import SttConfig, check_config


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"no": "type"}', '{"type": 3}', "null"])
def test_bad_messages_are_policy_violations(text: str) -> None:
    with pytest.raises(StreamError) as info:
        parse_message(text)
    assert info.value.close_code == POLICY


def test_bad_field_names_its_param() -> None:
    with pytest.raises(StreamError) as info:
        convert({"type": "config", "chunk_ms": "long"}, SttConfig)
    assert info.value.close_code == BAD_CONFIG
    assert info.value.param == "chunk_ms"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"chunk_ms": 500}, "chunk_ms"),
        ({"chunk_ms": 10000, "overlap_ms": 6000}, "overlap_ms"),
        ({"sample_rate": 100}, "sample_rate"),
        ({"beam_size": 0}, "beam_size"),
    ],
)
def test_config_values_are_checked(fields: dict[str, int], param: str) -> None:
    with pytest.raises(StreamError) as info:
        check_config(convert({"type": "config", **fields}, SttConfig))
    assert info.value.param == param


def test_unknown_model_maps_to_4404() -> None:
    error = model_error(ModelNotFound("no such model"))
    assert (error.code, error.close_code) == ("model_not_found", MODEL_NOT_FOUND)

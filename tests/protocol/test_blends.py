"""Voice blends: one parser (vox_protocol.blends) for the control plane and the kokoro runner."""

from __future__ import annotations

import pytest
from vox_control.errors import BadRequest
from vox_control.store.families import blend_voices
from vox_protocol import is_blend, parse_blend


def test_parse_blend_normalises_weights() -> None:
    assert parse_blend("af_bella") == [("af_bella", 1.0)]
    assert parse_blend("af_bella+af_sky") == [("af_bella", 0.5), ("af_sky", 0.5)]
    assert parse_blend("af_bella*3 + af_sky*1") == [("af_bella", 0.75), ("af_sky", 0.25)]
    assert parse_blend("jf_alpha*0.7+jm_kumo*0.3") == [
        ("jf_alpha", pytest.approx(0.7)),
        ("jm_kumo", pytest.approx(0.3)),
    ]


@pytest.mark.parametrize("spec", ["a*0+b", "a+", "a**2", "a*-1+b", "a b", "+", "a*1e400"])
def test_parse_blend_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="bad voice"):
        parse_blend(spec)


def test_is_blend() -> None:
    assert not is_blend("af_bella")
    assert is_blend("a+b")
    assert is_blend("a*0.5")


def test_the_control_plane_names_the_blend_parts() -> None:
    assert blend_voices("jf_alpha") is None
    assert blend_voices("jf_alpha*0.7+jm_kumo*0.3") == ["jf_alpha", "jm_kumo"]
    with pytest.raises(BadRequest) as info:
        blend_voices("jf_alpha*0+jm_kumo")
    assert info.value.param == "voice"

"""The adapter toolkit: lookup, the thread-backed iterator, options, and adapter helpers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import vox_runner.adapter as adapter_module
from runner_fakes import FakeAdapter
from vox_protocol import Synthesize, Voice
from vox_runner.adapter import (
    ENTRY_POINT_GROUP,
    AdapterError,
    AdapterNotFound,
    iterate_in_thread,
    load_adapter,
    option_bool,
    option_float,
    option_int,
    option_str,
    parse_device,
)
from vox_runner.adapters.piper import (
    PiperAdapter,
    _language_matches,
    _single_voice_id,
    voice_ids,
)


def test_load_adapter_by_module_and_class() -> None:
    assert load_adapter("runner_fakes:FakeAdapter") is FakeAdapter


def test_load_adapter_by_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = [
        EntryPoint(name="fake", value="runner_fakes:FakeAdapter", group=ENTRY_POINT_GROUP),
        EntryPoint(name="other", value="runner_fakes:SttOnlyAdapter", group=ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(adapter_module, "entry_points", lambda group: registered)
    assert load_adapter("fake") is FakeAdapter
    with pytest.raises(AdapterNotFound, match=r"unknown adapter 'nope'; available: fake, other"):
        load_adapter("nope")


def test_load_adapter_unknown_name_lists_what_is_available() -> None:
    with pytest.raises(AdapterNotFound, match=r"unknown adapter 'nope'; available: "):
        load_adapter("nope")


@pytest.mark.parametrize("spec", ["runner_fakes:Missing", "no_such_module:X", "runner_fakes:RATE"])
def test_load_adapter_bad_specs(spec: str) -> None:
    with pytest.raises(AdapterNotFound):
        load_adapter(spec)


async def test_iterate_in_thread_runs_steps_off_the_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def produce() -> Iterator[int]:
        for item in range(3):
            seen.append(threading.get_ident())
            yield item

    assert [item async for item in iterate_in_thread(produce())] == [0, 1, 2]
    assert loop_thread not in seen


async def test_iterate_in_thread_propagates_errors() -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise ValueError("bad")

    items = iterate_in_thread(produce())
    assert await anext(items) == 1
    with pytest.raises(ValueError, match="bad"):
        await anext(items)


async def test_iterate_in_thread_closes_a_generator_left_early() -> None:
    closed = threading.Event()

    def produce() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.set()

    items = iterate_in_thread(produce())
    assert await anext(items) == 0
    await items.aclose()
    assert await asyncio.to_thread(closed.wait, 5)


def test_options() -> None:
    options = {"n": "4", "f": 2, "b": "yes", "s": 3, "bad": "x", "half": 1.5, "none": None}
    assert option_int(options, "n", 0) == 4
    assert option_int(options, "none", 7) == 7
    assert option_float(options, "f", 0.0) == 2.0
    assert option_bool(options, "b", False) is True
    assert option_bool(options, "missing", True) is True
    assert option_str(options, "s") == "3"
    for getter in (option_int, option_float):
        with pytest.raises(AdapterError, match="'bad'"):
            getter(options, "bad", 0)
    with pytest.raises(AdapterError):
        option_int(options, "half", 0)
    with pytest.raises(AdapterError):
        option_bool(options, "bad", False)


@pytest.mark.parametrize(
    ("device", "parsed"),
    [("cpu", ("cpu", 0)), ("cuda", ("cuda", 0)), ("cuda:1", ("cuda", 1)), ("auto", ("auto", 0))],
)
def test_whisper_devices(device: str, parsed: tuple[str, int]) -> None:
    assert parse_device(device) == parsed


@pytest.mark.parametrize("device", ["tpu", "cpu:1", "cuda:x", "cuda:"])
def test_whisper_bad_devices(device: str) -> None:
    with pytest.raises(AdapterError, match="unsupported device"):
        parse_device(device)


@pytest.mark.parametrize(
    ("file", "config", "voice_id"),
    [
        ("en_US-joe-medium.onnx", {"dataset": "joe"}, "joe"),
        ("en_US-joe-medium.onnx", {}, "joe"),
        ("de_DE-thorsten_emotional-x_low.onnx", {}, "thorsten_emotional"),
        ("custom.onnx", {}, "custom"),
    ],
)
def test_piper_single_voice_id(file: str, config: dict[str, str], voice_id: str) -> None:
    assert _single_voice_id(Path(file), config) == voice_id


def test_piper_multi_speaker_voice_ids() -> None:
    config = {"num_speakers": 3, "speaker_id_map": {"p2": 2, "p0": 0, "p1": 1}}
    table, default = voice_ids(Path("en_US-libritts-high.onnx"), config)
    assert list(table.items()) == [("p0", 0), ("p1", 1), ("p2", 2)]
    assert default == "p0"
    table, default = voice_ids(Path("x.onnx"), {**config, "default_speaker_id": 2})
    assert default == "p2"
    table, default = voice_ids(Path("x.onnx"), {"num_speakers": 2})
    assert (table, default) == ({"0": 0, "1": 1}, "0")
    assert voice_ids(Path("en_US-joe-medium.onnx"), {"num_speakers": 1}) == ({"joe": 0}, "joe")


def test_piper_language_match_is_by_primary_language() -> None:
    class Config:
        espeak_voice = "en-us"

    voices = [Voice(id="joe", language="en-US")]
    for tag in ("en", "en-US", "en_us", "EN-GB"):
        assert _language_matches(tag, Config, voices)
    assert not _language_matches("de", Config, voices)


def test_piper_synthesize_validates_before_loading_anything() -> None:
    adapter = PiperAdapter()
    with pytest.raises(AdapterError) as caught:
        adapter.synthesize(Synthesize(id=1, text="Hi."))
    assert caught.value.code == "not_loaded"

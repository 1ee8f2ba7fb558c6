"""inference.speak: one stream key for a request's sentences, the next one sent ahead, both
cancelled when the listener goes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import pytest
from vox_control.inference import SynthesisOptions, speak, stream_key
from vox_protocol import AudioChunk


class Runner:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []  # (sentence, stream) as sent
        self.closed: list[str] = []
        self.gate: dict[str, asyncio.Event] = {}  # a sentence's audio waits for its event

    async def synthesize(self, text: str, **options: Any) -> AsyncGenerator[AudioChunk, None]:
        self.started.append((text, options["stream"]))
        try:
            if text in self.gate:
                await self.gate[text].wait()
            yield AudioChunk(id=1, seq=0, audio=text.encode().ljust(4, b"\0"), sample_rate=8000)
        finally:
            self.closed.append(text)


def _model(runner: Runner) -> Any:
    return SimpleNamespace(runner=runner)


async def test_the_next_sentence_is_sent_while_this_one_is_heard() -> None:
    runner = Runner()
    heard: list[bytes] = []
    async with contextlib.aclosing(speak(_model(runner), ["a", "b", "c"], SynthesisOptions())) as s:
        async for chunk in s:
            if not heard:
                await asyncio.sleep(0)  # the listener is busy with "a": "b" is on its way
                assert [t for t, _ in runner.started] == ["a", "b"]
            heard.append(chunk.audio.rstrip(b"\0"))
    assert heard == [b"a", b"b", b"c"]
    streams = {stream for _, stream in runner.started}
    assert len(streams) == 1
    assert streams != {""}
    other = Runner()
    async for _ in speak(_model(other), ["x"], SynthesisOptions()):
        pass
    assert other.started[0][1] not in streams  # every request its own stream


async def test_a_listener_that_goes_cancels_the_sentence_sent_ahead() -> None:
    runner = Runner()
    runner.gate["b"] = asyncio.Event()  # never set: "b" is still being made
    speech = speak(_model(runner), ["a", "b", "c"], SynthesisOptions())
    first = await anext(speech)
    assert first.audio.startswith(b"a")
    await asyncio.sleep(0)
    await speech.aclose()
    assert "b" in runner.closed
    assert [t for t, _ in runner.started] == ["a", "b"]  # "c" never went out


async def test_an_error_in_a_later_sentence_reaches_the_listener() -> None:
    class Failing(Runner):
        async def synthesize(self, text: str, **options: Any) -> AsyncGenerator[AudioChunk, None]:
            if text == "b":
                raise RuntimeError("runner gone")
            async for chunk in super().synthesize(text, **options):
                yield chunk

    heard: list[AudioChunk] = []

    async def listen() -> None:
        async for chunk in speak(_model(Failing()), ["a", "b", "c"], SynthesisOptions()):
            heard.append(chunk)

    with pytest.raises(RuntimeError, match="runner gone"):
        await listen()
    assert len(heard) == 1


async def test_a_session_keeps_one_stream_across_its_sentences() -> None:
    runner = Runner()
    key = stream_key()
    for sentence in ("one", "two"):  # a WebSocket or Wyoming session: one speak a sentence
        async for _ in speak(_model(runner), [sentence], SynthesisOptions(), key):
            pass
    assert runner.started == [("one", key), ("two", key)]
    assert stream_key() != key

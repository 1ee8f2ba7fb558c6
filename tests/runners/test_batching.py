"""Transcriptions waiting at the gate ride in the batch of the one that gets it."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from vox_protocol import ModelInfo, Transcribe, Transcript
from vox_runner.adapter import Adapter
from vox_runner.batching import Batcher
from vox_runner.gate import Gate


class Fake(Adapter):
    """Transcribes to the request's prompt-free key; records its calls; a gate to hold it."""

    name: ClassVar[str] = "fake"
    kind: ClassVar[Literal["stt", "tts", "vad"]] = "stt"

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail = False
        self.calls_to_hold = 0
        self.second = asyncio.Event()

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        raise NotImplementedError

    def unload(self) -> None:
        pass

    def batch_key(self, request: Transcribe) -> Hashable | None:
        return request.language

    async def transcribe(self, request: Transcribe) -> Transcript:
        return (await self.transcribe_batch([request]))[0]

    async def transcribe_batch(self, requests: Sequence[Transcribe]) -> list[Transcript]:
        self.calls.append([r.id for r in requests])
        await self.hold.wait()
        if len(self.calls) > 1 and self.calls_to_hold:
            self.calls_to_hold -= 1
            await self.second.wait()
        if self.fail:
            raise RuntimeError("model call failed")
        return [Transcript(id=r.id, text=f"text {r.id}") for r in requests]


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _request(n: int, language: str = "en") -> Transcribe:
    return Transcribe(id=n, audio=b"\0" * 4, language=language)


async def test_a_lone_request_runs_alone() -> None:
    adapter = Fake()
    batcher = Batcher(Gate(1), adapter)
    result = await batcher.transcribe(_request(1), "en")
    assert result.text == "text 1"
    assert adapter.calls == [[1]]


async def test_requests_that_queue_behind_one_run_as_one_batch_each_with_its_own_result() -> None:
    adapter = Fake()
    adapter.hold.clear()
    batcher = Batcher(Gate(1), adapter)
    first = asyncio.create_task(batcher.transcribe(_request(1), "en"))
    await _settle()
    queued = [asyncio.create_task(batcher.transcribe(_request(n), "en")) for n in (2, 3, 4)]
    await _settle()
    adapter.hold.set()
    results = await asyncio.gather(first, *queued)
    assert [r.text for r in results] == ["text 1", "text 2", "text 3", "text 4"]
    assert adapter.calls == [[1], [2, 3, 4]]


async def test_only_equal_keys_share_a_batch_and_a_batch_has_a_limit() -> None:
    adapter = Fake()
    adapter.hold.clear()
    batcher = Batcher(Gate(1), adapter, limit=2)
    first = asyncio.create_task(batcher.transcribe(_request(1), "en"))
    await _settle()
    queued = [
        asyncio.create_task(batcher.transcribe(_request(n, lang), lang))
        for n, lang in ((2, "en"), (3, "de"), (4, "en"), (5, "en"))
    ]
    await _settle()
    adapter.hold.set()
    results = await asyncio.gather(first, *queued)
    assert [r.id for r in results] == [1, 2, 3, 4, 5]
    assert adapter.calls == [[1], [2, 4], [3], [5]]


async def test_a_cancelled_rider_leaves_the_queue_and_the_batch_goes_on() -> None:
    adapter = Fake()
    adapter.hold.clear()
    gate = Gate(1)
    batcher = Batcher(gate, adapter)
    first = asyncio.create_task(batcher.transcribe(_request(1), "en"))
    await _settle()
    queued = [asyncio.create_task(batcher.transcribe(_request(n), "en")) for n in (2, 3)]
    await _settle()
    queued[0].cancel()
    await _settle()
    adapter.hold.set()
    assert (await first).id == 1
    assert (await queued[1]).id == 3
    with pytest.raises(asyncio.CancelledError):
        await queued[0]
    assert adapter.calls == [[1], [3]]
    # Nothing is left holding or waiting for the gate.
    async with gate.shared():
        pass


async def test_a_rider_cancelled_inside_a_running_batch_drops_its_result_only() -> None:
    adapter = Fake()
    adapter.hold.clear()
    batcher = Batcher(Gate(1), adapter)
    first = asyncio.create_task(batcher.transcribe(_request(1), "en"))
    await _settle()
    queued = [asyncio.create_task(batcher.transcribe(_request(n), "en")) for n in (2, 3)]
    await _settle()
    adapter.calls_to_hold = 1  # the next call (the batch [2, 3]) waits for `second`
    adapter.hold.set()
    await first
    await _settle()
    assert adapter.calls == [[1], [2, 3]]
    queued[0].cancel()  # the leader: its rider still gets the result
    await _settle()
    adapter.second.set()
    assert (await queued[1]).id == 3
    with pytest.raises(asyncio.CancelledError):
        await queued[0]


async def test_a_failed_batch_fails_every_request_in_it() -> None:
    adapter = Fake()
    adapter.hold.clear()
    batcher = Batcher(Gate(1), adapter)
    first = asyncio.create_task(batcher.transcribe(_request(1), "en"))
    await _settle()
    queued = [asyncio.create_task(batcher.transcribe(_request(n), "en")) for n in (2, 3)]
    await _settle()
    adapter.fail = True
    adapter.hold.set()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results), results


async def test_the_gate_skips_a_waiter_cancelled_in_the_same_turn_as_a_release() -> None:
    gate = Gate(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.shared():
            await release.wait()

    async def waiter() -> None:
        async with gate.shared():
            pass

    held = asyncio.create_task(holder())
    await _settle()
    waiting = asyncio.create_task(waiter())
    later = asyncio.create_task(waiter())
    await _settle()
    # Cancelled, and before its cleanup runs the slot is released: the release must skip it.
    waiting.cancel()
    release.set()
    await held
    await later
    with pytest.raises(asyncio.CancelledError):
        await waiting

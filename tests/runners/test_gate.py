"""The runner's gate: slots go to the lowest rank when freed; speech streams' ranks."""

from __future__ import annotations

import asyncio

import pytest
from vox_runner.gate import EXCLUSIVE, FIRST, LATER, RUNNING_DRY, Gate, Rank, Streams


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _hold(gate: Gate, rank: Rank | None, log: list[str], name: str) -> None:
    async with gate.shared(None if rank is None else lambda: rank):
        log.append(name)
        await asyncio.sleep(0)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_freed_slot_goes_to_the_lowest_rank_not_the_first_come() -> None:
    gate = Gate(1)
    log: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.shared():
            await release.wait()

    held = asyncio.create_task(holder())
    await _settle()
    waiters = [
        asyncio.create_task(_hold(gate, (LATER, 1, 0), log, "later")),
        asyncio.create_task(_hold(gate, (RUNNING_DRY, 5.0, 0), log, "dry")),
        asyncio.create_task(_hold(gate, None, log, "one-shot")),  # FIRST, by arrival
        asyncio.create_task(_hold(gate, (FIRST, -1, 0), log, "first")),
    ]
    await _settle()
    release.set()
    await asyncio.gather(held, *waiters)
    assert log == ["first", "one-shot", "dry", "later"]


async def test_ranks_are_read_when_the_slot_frees() -> None:
    gate = Gate(1)
    ranks: dict[str, Rank] = {"a": (LATER, 1, 0), "b": (LATER, 2, 0)}
    log: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.shared():
            await release.wait()

    async def waiter(name: str) -> None:
        async with gate.shared(lambda: ranks[name]):
            log.append(name)

    held = asyncio.create_task(holder())
    await _settle()
    tasks = [asyncio.create_task(waiter("a")), asyncio.create_task(waiter("b"))]
    await _settle()
    ranks["b"] = (RUNNING_DRY, 0.0, 0)  # b's listener ran short while it waited
    release.set()
    await asyncio.gather(held, *tasks)
    assert log == ["b", "a"]


async def test_a_cancelled_waiter_gives_up_its_place_or_its_slot() -> None:
    gate = Gate(1)
    log: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.shared():
            await release.wait()

    held = asyncio.create_task(holder())
    await _settle()
    gone = asyncio.create_task(_hold(gate, (FIRST, 0, 0), log, "gone"))
    stays = asyncio.create_task(_hold(gate, (LATER, 0, 0), log, "stays"))
    await _settle()
    gone.cancel()
    release.set()  # frees the slot in the same turn: granted to "gone", then cancelled
    await asyncio.gather(held, stays)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert log == ["stays"]
    async with asyncio.timeout(1):  # and the slot is free again
        async with gate.shared():
            pass


async def test_load_and_unload_go_before_waiting_work() -> None:
    gate = Gate(2)
    log: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.shared():
            await release.wait()

    async def load() -> None:
        async with gate.exclusive():
            log.append("load")

    held = [asyncio.create_task(holder()) for _ in range(2)]
    await _settle()
    work = asyncio.create_task(_hold(gate, (FIRST, -1, 0), log, "work"))
    loading = asyncio.create_task(load())
    await _settle()
    release.set()
    await asyncio.gather(*held, work, loading)
    assert log == ["load", "work"]
    assert EXCLUSIVE < FIRST


def test_a_streams_first_sentence_is_first_audio_and_the_one_sent_ahead_waits() -> None:
    clock = Clock()
    streams = Streams(Gate(1), clock)
    old, new = streams.open("old"), streams.open("new")
    old_first, old_second = old.sentence(), old.sentence()
    new_first = new.sentence()
    assert old_first()[0] == new_first()[0] == FIRST
    assert old_first() < new_first()  # first come, first heard
    assert old_second()[0] == LATER
    old.sent(10.0)  # ten seconds of audio to play: in no hurry
    assert new_first() < old_second()
    assert old_second() == (LATER, old.order, 1)
    assert streams.open("old") is old


def test_a_stream_running_dry_goes_before_the_oldest() -> None:
    clock = Clock()
    streams = Streams(Gate(1), clock)
    oldest, short = streams.open("a"), streams.open("b")
    oldest.sentence()
    short.sentence()
    oldest.sent(10.0)
    short.sent(3.0)
    oldest_next, short_next = oldest.sentence(), short.sentence()
    assert oldest_next() < short_next()  # both have audio to play: the oldest stream first
    clock.now += 2.5  # b's listener has half a second left
    assert short_next()[0] == RUNNING_DRY
    assert short_next() < oldest_next()


def test_the_margin_follows_how_long_a_sentence_takes() -> None:
    streams = Streams(Gate(1), Clock())
    assert streams.margin() == 1.0
    for _ in range(30):
        streams.worked(2.0)  # a slow machine: two seconds a sentence
    assert streams.margin() == pytest.approx(6.0, rel=0.01)


def test_idle_streams_are_forgotten_and_an_empty_key_is_a_stream_of_its_own() -> None:
    clock = Clock()
    streams = Streams(Gate(1), clock)
    kept = streams.open("k")
    assert streams.open("") is not streams.open("")
    clock.now += 61
    assert streams.open("k") is not kept


async def test_a_cancelled_load_lets_the_work_it_held_back_start() -> None:
    gate = Gate(2)
    log: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.shared():
            await release.wait()

    async def load() -> None:
        async with gate.exclusive():
            log.append("load")

    held = asyncio.create_task(holder())  # one of two slots busy: the load must wait
    await _settle()
    loading = asyncio.create_task(load())
    await _settle()
    work = asyncio.create_task(_hold(gate, (LATER, 0, 0), log, "work"))
    await _settle()
    assert log == []  # a free slot, but the load ranks first and waits for both
    loading.cancel()
    async with asyncio.timeout(1):
        await work
    assert log == ["work"]
    release.set()
    await held

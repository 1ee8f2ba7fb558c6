"""The control plane hands its freed heap back once idle: the timer, the busy check, the
scheduler's idle signal, and glibc's malloc_trim itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from vox_control.heap import IdleTrim, _glibc_trim

from tests.control.fakes import Harness

DELAY = 0.02


def trimmer(busy: list[bool], trims: list[int]) -> IdleTrim:
    return IdleTrim(lambda: busy[0], delay=DELAY, trim=lambda: trims.append(1))


async def until(done: Callable[[], bool]) -> None:
    """Poll instead of sleeping a fixed time: CI is slow at times."""
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_one_trim_after_the_server_stays_idle() -> None:
    trims: list[int] = []
    heap = trimmer([False], trims)
    heap.idle()
    assert trims == []  # not at once: a request may follow straight away
    heap.idle()  # a second idle moment restarts the wait instead of adding a trim
    await until(lambda: heap.trims == 1)
    await asyncio.sleep(DELAY * 5)
    await heap.close()
    assert trims == [1]


async def test_a_server_busy_when_the_timer_fires_is_not_trimmed() -> None:
    busy, trims = [False], []
    heap = trimmer(busy, trims)
    heap.idle()
    busy[0] = True  # a request began during the wait
    await asyncio.sleep(DELAY * 5)
    assert trims == []
    busy[0] = False
    heap.idle()  # its end
    await until(lambda: heap.trims == 1)
    await heap.close()
    assert trims == [1]


async def test_close_cancels_a_pending_trim() -> None:
    trims: list[int] = []
    heap = trimmer([False], trims)
    heap.idle()
    await heap.close()
    await asyncio.sleep(DELAY * 5)
    assert trims == []


async def test_the_scheduler_says_idle_as_its_last_request_ends(tmp_path: Path) -> None:
    seen: list[bool] = []
    h = Harness(tmp_path, on_idle=lambda: seen.append(h.scheduler.busy()))
    async with h.scheduler.use("a:b"):
        async with h.scheduler.use("c:d"):
            assert h.scheduler.busy()
        assert seen == []  # a:b is still held
    assert seen == [False]
    assert not h.scheduler.busy()


def test_glibc_trim_runs_here() -> None:
    trim = _glibc_trim()
    assert trim is not None  # Linux with glibc, as CI and the images are
    trim()

"""The runner watchdog on a fake clock: silence while busy kills, idle silence does not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from vox_control.runner_client import RunnerDied, RunnerStalled
from vox_control.scheduler.watchdog import (
    WATCHDOG_DEFAULT_S,
    watch,
    watchdog_s,
)

from tests.control.fakes import FakeClock, FakeRunner, Harness


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_family_defaults_and_the_setting() -> None:
    assert watchdog_s("faster-whisper", 0.0) == 60.0
    assert watchdog_s("dia", 0.0) == WATCHDOG_DEFAULT_S
    assert watchdog_s("piper", 2.5) == 2.5  # the setting wins for every family


async def test_silence_while_busy_kills_at_the_limit_not_before() -> None:
    clock, runner = FakeClock(), FakeRunner("m")
    task = asyncio.create_task(watch(runner, 10.0, clock))
    await clock.advance(100.0)  # idle: silence proves nothing
    await _settle()
    assert runner.stalled is None
    runner.busy_since = clock.now()
    await clock.advance(9.0)
    await _settle()
    assert runner.stalled is None
    await clock.advance(1.0)
    await _settle()
    assert runner.stalled == 10.0
    died = await asyncio.wait_for(task, 1.0)
    assert isinstance(died, RunnerDied)


async def test_a_runner_that_dies_on_its_own_ends_the_watch() -> None:
    clock, runner = FakeClock(), FakeRunner("m")
    task = asyncio.create_task(watch(runner, 10.0, clock))
    await _settle()
    runner.crash()
    assert isinstance(await asyncio.wait_for(task, 1.0), RunnerDied)
    assert runner.stalled is None


async def test_a_stalled_request_is_a_504_and_the_next_request_gets_a_new_runner(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, runner_watchdog=5.0)
    stalled: list[float | None] = []

    async def request() -> None:
        async with h.scheduler.use("a:b") as model:
            model.runner.busy_since = h.clock.now()
            await h.clock.advance(5.0)
            await _settle()
            stalled.append(model.runner.stalled)
            raise RunnerStalled("a:b", 5.0, [])  # what its pending request now gets

    with pytest.raises(RunnerStalled) as caught:
        await request()
    assert stalled == [5.0]
    assert caught.value.status == 504
    assert caught.value.code == "runner_timeout"
    assert "restarted" in caught.value.message
    assert h.loaded() == []  # dropped as soon as it died
    await h.touch("a:b")
    assert len(h.runners("a:b")) == 2

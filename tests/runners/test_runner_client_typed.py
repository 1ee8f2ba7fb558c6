"""RunnerClient's typed methods against a real runner process (the fake adapter): ids are
assigned inside, replies are checked, and an early close or a cancelled task sends Cancel."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from vox_control.runner_client import (
    RunnerClient,
    RunnerDied,
    RunnerRequestError,
    UnexpectedReply,
)
from vox_protocol import AudioChunk, Cancel, ControlMessage, ListVoices, Transcript

FAKE = "runner_fakes:FakeAdapter"
AUDIO = b"\x00" * 4 * 16000


@pytest.fixture
async def client(
    runner_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RunnerClient, list[object]]]:
    runner = await RunnerClient.start(
        "fake", sys.executable, FAKE, env=runner_env, max_frame=1 << 24
    )
    sent: list[object] = []
    send = runner._send

    async def spy(message: ControlMessage) -> None:
        sent.append(message)
        await send(message)

    monkeypatch.setattr(runner, "_send", spy)
    try:
        await runner.load("/models/fake")
        yield runner, sent
    finally:
        await runner.close(grace=0.5)


async def test_typed_calls(client: tuple[RunnerClient, list[object]]) -> None:
    runner, sent = client
    transcript = await runner.transcribe(AUDIO, 16000, language="en")
    assert transcript.text == "16000 samples"
    voices = await runner.voices()
    assert voices.default == "a"
    chunks = [chunk async for chunk in runner.synthesize("One. Two", voice="b")]
    assert [c.text for c in chunks] == ["One", "Two"]
    ids = [getattr(m, "id", None) for m in sent]
    assert ids == sorted(set(ids))  # one fresh id per request, assigned by the client
    assert runner.in_flight == 0


async def test_a_killed_runner_fails_the_next_call_once_its_death_is_known(
    client: tuple[RunnerClient, list[object]],
) -> None:
    """Whether the write meets a broken pipe or the reader's EOF ends the call, it fails with
    the exit code, and the client already reports the death (the scheduler's cue)."""
    runner, _ = client
    runner.proc.kill()
    with pytest.raises(RunnerDied) as info:
        await runner.transcribe(AUDIO, 16000)
    assert info.value.returncode == -9
    assert runner.died is not None
    assert not runner.alive


async def test_a_runner_error_is_raised(client: tuple[RunnerClient, list[object]]) -> None:
    runner, _ = client
    with pytest.raises(RunnerRequestError) as info:
        await runner.transcribe(AUDIO, 16000, prompt="bad")
    assert info.value.code == "bad_request"


async def test_a_wrong_reply_is_one_failure_type(
    client: tuple[RunnerClient, list[object]],
) -> None:
    runner, _ = client
    with pytest.raises(UnexpectedReply) as info:
        await runner._request(ListVoices(id=next(runner._ids)), Transcript)
    assert info.value.code == "protocol"  # a RunnerRequestError: every mapping knows it
    assert runner.in_flight == 0


async def test_closing_a_synthesis_early_cancels_it(
    client: tuple[RunnerClient, list[object]],
) -> None:
    runner, sent = client
    stream = runner.synthesize("One. wait. Three")
    first = await anext(stream)
    assert isinstance(first, AudioChunk)
    await stream.aclose()
    assert [m for m in sent if isinstance(m, Cancel)] == [Cancel(id=first.id)]
    assert runner.in_flight == 0


async def test_cancelling_the_consumer_cancels_the_synthesis(
    client: tuple[RunnerClient, list[object]],
) -> None:
    runner, sent = client
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in runner.synthesize("One. wait. Three"):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len([m for m in sent if isinstance(m, Cancel)]) == 1
    assert runner.in_flight == 0

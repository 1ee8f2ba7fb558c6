"""Concurrent syntheses in one runner: every client's first sentence first, then the oldest
stream's, unless a listener is running out of audio (then earliest end first: round robin)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from runner_fakes import FakeAdapter
from vox_protocol import (
    PROTOCOL_VERSION,
    AudioChunk,
    ControlMessage,
    Hello,
    Load,
    Loaded,
    RunnerMessage,
    SynthesisDone,
    Synthesize,
    Transcribe,
    Transcript,
    Welcome,
)
from vox_runner.host import RunnerHost


async def _host(
    parallel: int = 1,
) -> tuple[asyncio.Queue[ControlMessage | None], asyncio.Queue[RunnerMessage]]:
    inbox: asyncio.Queue[ControlMessage | None] = asyncio.Queue()
    outbox: asyncio.Queue[RunnerMessage] = asyncio.Queue()

    async def messages() -> AsyncIterator[ControlMessage]:
        while (item := await inbox.get()) is not None:
            yield item

    host = RunnerHost(FakeAdapter(), outbox.put, parallel=parallel)
    asyncio.get_running_loop().create_task(host.run(messages()))
    inbox.put_nowait(Hello(protocol_version=PROTOCOL_VERSION))
    assert isinstance(await outbox.get(), Welcome)
    inbox.put_nowait(Load(id=1, model_dir="/m", device="cpu"))
    assert isinstance(await outbox.get(), Loaded)
    return inbox, outbox


async def test_four_syntheses_take_turns_sentence_by_sentence() -> None:
    inbox, outbox = await _host()
    text = "one. two. three. four"
    for request_id in range(10, 14):
        inbox.put_nowait(Synthesize(id=request_id, text=text))
    order: list[tuple[int, int]] = []
    done = 0
    while done < 4:
        message = await asyncio.wait_for(outbox.get(), 5)
        if isinstance(message, AudioChunk):
            order.append((message.id, message.seq))
        elif isinstance(message, SynthesisDone):
            done += 1
    # Every client has its first audio before any client has its third sentence.
    last_first = max(i for i, (_, seq) in enumerate(order) if seq == 0)
    first_third = min(i for i, (_, seq) in enumerate(order) if seq == 2)
    assert last_first < first_third, order
    inbox.put_nowait(None)


async def test_a_transcription_waits_one_sentence_not_a_whole_text() -> None:
    inbox, outbox = await _host()
    inbox.put_nowait(Synthesize(id=20, text="a. b. c. d. e. f"))
    inbox.put_nowait(Transcribe(id=21, audio=b"\x00" * 6400))
    seen: list[str] = []
    while "transcript" not in seen:
        message = await asyncio.wait_for(outbox.get(), 5)
        if isinstance(message, AudioChunk):
            seen.append("chunk")
        elif isinstance(message, Transcript):
            seen.append("transcript")
    assert seen.count("chunk") <= 2, seen
    inbox.put_nowait(None)


@pytest.mark.parametrize("marked", [True, False])
async def test_a_stream_ends_right_after_its_last_chunk(marked: bool) -> None:
    inbox, outbox = await _host()
    text = "one. two. three" if marked else "one. two. unmarked"
    for request_id in range(30, 34):
        inbox.put_nowait(Synthesize(id=request_id, text=text))
    frames: list[tuple[str, int]] = []
    while sum(kind == "done" for kind, _ in frames) < 4:
        message = await asyncio.wait_for(outbox.get(), 5)
        if isinstance(message, AudioChunk):
            frames.append(("chunk", message.id))
        elif isinstance(message, SynthesisDone):
            frames.append(("done", message.id))
    # Other clients' chunks sent between a stream's last chunk and its end. Marked: none
    # (the end follows at once). Unmarked: a stream learns it ended only on its next turn,
    # after another sentence of every other client still speaking.
    gaps = []
    for request_id in range(30, 34):
        last = max(i for i, frame in enumerate(frames) if frame == ("chunk", request_id))
        done = frames.index(("done", request_id))
        gaps.append(sum(kind == "chunk" for kind, _ in frames[last:done]) - 1)
    if marked:
        assert max(gaps) == 0, frames
    else:
        assert max(gaps) >= 2, frames
    inbox.put_nowait(None)


async def test_streams_hear_first_audio_in_turn_then_finish_oldest_first() -> None:
    inbox, outbox = await _host()
    streams, sentences = ["a", "b", "c", "d"], 3
    ids = {}
    # Every sentence of every stream waiting at once (the control plane sends one ahead).
    for number in range(sentences):
        for stream in streams:
            request_id = 100 + 10 * streams.index(stream) + number
            ids[request_id] = f"{stream}{number}"
            inbox.put_nowait(Synthesize(id=request_id, text=f"long {number}", stream=stream))
    order: list[str] = []
    while len(order) < len(ids):
        message = await asyncio.wait_for(outbox.get(), 5)
        if isinstance(message, AudioChunk):
            order.append(ids[message.id])
    # Four seconds of audio a sentence: nobody runs dry, so no interleaving after the firsts.
    assert order == ["a0", "b0", "c0", "d0", "a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2"]
    inbox.put_nowait(None)

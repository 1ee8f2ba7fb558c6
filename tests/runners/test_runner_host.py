"""In-process tests of the runner host's dispatch, with fake adapters and in-memory queues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from runner_fakes import RATE, FakeAdapter, SttOnlyAdapter
from vox_protocol import (
    PROTOCOL_VERSION,
    AudioChunk,
    Cancel,
    ControlMessage,
    Error,
    Hello,
    ListVoices,
    Load,
    Loaded,
    ProtocolError,
    RunnerMessage,
    Shutdown,
    SynthesisDone,
    Synthesize,
    Transcribe,
    Transcript,
    Unload,
    Voices,
    Welcome,
)
from vox_runner.adapter import Adapter
from vox_runner.host import EXIT_OK, EXIT_PROTOCOL, EXIT_VERSION, RunnerHost

T = TypeVar("T")
AUDIO = b"\x00" * 4 * 1600


class Harness:
    """Drives a RunnerHost through queues: ``None`` in the inbox is EOF."""

    def __init__(self, adapter: Adapter, parallel: int = 1) -> None:
        self.adapter = adapter
        self.inbox: asyncio.Queue[ControlMessage | Exception | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[RunnerMessage] = asyncio.Queue()
        self.host = RunnerHost(adapter, self.outbox.put, parallel=parallel)
        self.task = asyncio.create_task(self.host.run(self._messages()))

    async def _messages(self) -> AsyncIterator[ControlMessage]:
        while (item := await self.inbox.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item

    def send(self, message: ControlMessage | Exception | None) -> None:
        self.inbox.put_nowait(message)

    async def recv(self, limit: float = 5.0) -> RunnerMessage:
        return await asyncio.wait_for(self.outbox.get(), limit)

    async def expect(self, kind: type[T], limit: float = 5.0) -> T:
        message = await self.recv(limit)
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
        return message

    async def error(self, request_id: int, code: str) -> Error:
        error = await self.expect(Error)
        assert (error.id, error.code) == (request_id, code), error
        return error

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.task, 5.0)


async def started(adapter: Adapter | None = None, *, load: bool = True, **kw: Any) -> Harness:
    harness = Harness(adapter or FakeAdapter(), **kw)
    harness.send(Hello(protocol_version=PROTOCOL_VERSION))
    welcome = await harness.expect(Welcome)
    assert welcome.adapter == harness.adapter.name
    if load:
        harness.send(Load(id=1, model_dir="/models/fake", device="cpu"))
        await harness.expect(Loaded)
    return harness


@pytest.fixture
async def fake() -> AsyncIterator[Harness]:
    harness = await started()
    yield harness
    if not harness.task.done():
        harness.send(Shutdown())
        await harness.exit_code()


async def test_handshake_and_load_reports_info() -> None:
    harness = await started(load=False)
    harness.send(Load(id=7, model_dir="/models/fake", device="cpu", options={"sleep": 0.05}))
    loaded = await harness.expect(Loaded)
    assert loaded.id == 7
    assert loaded.info.sample_rate == RATE
    assert loaded.info.default_voice == "a"
    assert loaded.load_seconds >= 0.05
    harness.send(Shutdown())
    assert await harness.exit_code() == EXIT_OK


async def test_version_mismatch_answers_error_and_exits_3() -> None:
    harness = Harness(FakeAdapter())
    harness.send(Hello(protocol_version=PROTOCOL_VERSION + 1))
    error = await harness.error(0, "version_mismatch")
    assert str(PROTOCOL_VERSION) in error.message
    assert await harness.exit_code() == EXIT_VERSION


async def test_first_message_must_be_hello() -> None:
    harness = Harness(FakeAdapter())
    harness.send(Load(id=1, model_dir="/x"))
    await harness.error(0, "protocol")
    assert await harness.exit_code() == EXIT_PROTOCOL


async def test_bad_frame_is_fatal(fake: Harness) -> None:
    fake.send(ProtocolError("undecodable frame"))
    await fake.error(0, "protocol")
    assert await fake.exit_code() == EXIT_PROTOCOL
    assert fake.adapter.unloads == 1  # type: ignore[attr-defined]


async def test_second_hello_is_a_protocol_error(fake: Harness) -> None:
    fake.send(Hello(protocol_version=PROTOCOL_VERSION))
    await fake.error(0, "protocol")
    assert await fake.exit_code() == EXIT_PROTOCOL


async def test_inference_before_load_is_not_loaded() -> None:
    harness = await started(load=False)
    harness.send(Transcribe(id=2, audio=AUDIO))
    await harness.error(2, "not_loaded")
    harness.send(ListVoices(id=3))
    await harness.error(3, "not_loaded")
    harness.send(Synthesize(id=4, text="Hi."))
    await harness.error(4, "not_loaded")
    harness.send(None)
    assert await harness.exit_code() == EXIT_OK


async def test_load_failure_then_retry() -> None:
    harness = await started(load=False)
    harness.send(Load(id=1, model_dir="/models/broken", options={"fail": True}))
    error = await harness.error(1, "load_failed")
    assert error.message == "RuntimeError: cannot load /models/broken"
    harness.send(Load(id=2, model_dir="/models/fake"))
    assert (await harness.expect(Loaded)).id == 2
    harness.send(Shutdown())
    assert await harness.exit_code() == EXIT_OK


async def test_transcribe(fake: Harness) -> None:
    fake.send(Transcribe(id=5, audio=AUDIO))
    transcript = await fake.expect(Transcript)
    assert (transcript.id, transcript.text) == (5, "1600 samples")


async def test_adapter_exceptions_become_errors_and_the_runner_keeps_serving(
    fake: Harness,
) -> None:
    fake.send(Transcribe(id=5, audio=AUDIO, prompt="boom"))
    error = await fake.error(5, "inference_failed")
    assert error.message == "RuntimeError: boom"
    fake.send(Transcribe(id=6, audio=AUDIO, prompt="bad"))
    assert (await fake.error(6, "bad_request")).message == "bad audio"
    fake.send(Transcribe(id=7, audio=AUDIO))
    assert (await fake.expect(Transcript)).id == 7


async def test_synthesize_streams_chunks_in_order(fake: Harness) -> None:
    fake.send(Synthesize(id=9, text="One. Two. Three"))
    chunks = [await fake.expect(AudioChunk) for _ in range(3)]
    assert [c.seq for c in chunks] == [0, 1, 2]
    assert [c.text for c in chunks] == ["One", "Two", "Three"]
    assert all(c.id == 9 and c.sample_rate == RATE for c in chunks)
    done = await fake.expect(SynthesisDone)
    assert (done.id, done.chunks, done.samples, done.sample_rate) == (9, 3, 600, RATE)


async def test_first_chunk_is_sent_before_the_next_sentence_is_made(fake: Harness) -> None:
    adapter: FakeAdapter = fake.adapter  # type: ignore[assignment]
    fake.send(Synthesize(id=9, text="One. wait. Three"))
    first = await fake.expect(AudioChunk)  # arrives while the generator is blocked
    assert first.seq == 0
    adapter.release.set()
    assert [(await fake.expect(AudioChunk)).seq for _ in range(2)] == [1, 2]
    assert (await fake.expect(SynthesisDone)).chunks == 3


async def test_synthesis_failure_midway(fake: Harness) -> None:
    fake.send(Synthesize(id=3, text="One. explode. Three"))
    assert (await fake.expect(AudioChunk)).seq == 0
    assert (await fake.error(3, "inference_failed")).message == "RuntimeError: synthesis exploded"
    fake.send(Synthesize(id=4, text=" "))
    await fake.error(4, "bad_request")
    fake.send(Synthesize(id=5, text="Fine", voice="b"))
    assert (await fake.expect(AudioChunk)).id == 5


async def test_unsupported_operations() -> None:
    harness = await started(SttOnlyAdapter())
    harness.send(Synthesize(id=2, text="Hello."))
    await harness.error(2, "unsupported")
    harness.send(Transcribe(id=3, audio=AUDIO))
    await harness.error(3, "unsupported")
    harness.send(ListVoices(id=4))
    voices = await harness.expect(Voices)
    assert (voices.id, voices.voices, voices.default) == (4, [], None)
    harness.send(None)
    assert await harness.exit_code() == EXIT_OK


async def test_list_voices(fake: Harness) -> None:
    fake.send(ListVoices(id=4))
    voices = await fake.expect(Voices)
    assert [v.id for v in voices.voices] == ["a", "b"]
    assert voices.default == "a"


async def test_cancel_answers_cancelled_and_keeps_serving(fake: Harness) -> None:
    fake.send(Transcribe(id=11, audio=AUDIO, prompt="sleep"))
    await asyncio.sleep(0.05)
    fake.send(Cancel(id=11))
    await fake.error(11, "cancelled")
    fake.send(Cancel(id=999))  # unknown or finished: ignored
    fake.send(Transcribe(id=12, audio=AUDIO))
    assert (await fake.expect(Transcript)).id == 12


async def test_cancel_a_stream_closes_its_generator_after_the_blocked_step(fake: Harness) -> None:
    adapter: FakeAdapter = fake.adapter  # type: ignore[assignment]
    fake.send(Synthesize(id=9, text="One. wait. Three"))
    await fake.expect(AudioChunk)
    assert await asyncio.to_thread(adapter.waiting.wait, 5)
    fake.send(Cancel(id=9))
    await fake.error(9, "cancelled")
    assert not adapter.closed.is_set()  # still inside the blocked step in its thread
    adapter.release.set()
    assert await asyncio.to_thread(adapter.closed.wait, 5)


async def test_list_voices_answers_during_blocking_inference(fake: Harness) -> None:
    fake.send(Transcribe(id=20, audio=AUDIO, prompt="block", temperature=0.3))
    await asyncio.sleep(0.05)
    fake.send(ListVoices(id=21))
    assert (await fake.expect(Voices)).id == 21
    assert (await fake.expect(Transcript)).id == 20


@pytest.mark.parametrize("parallel", [1, 2])
async def test_parallel_limits_concurrent_inference(parallel: int) -> None:
    harness = await started(parallel=parallel)
    for request_id in range(10, 14):
        harness.send(Transcribe(id=request_id, audio=AUDIO, prompt="overlap"))
    ids = {(await harness.expect(Transcript)).id for _ in range(4)}
    assert ids == {10, 11, 12, 13}
    assert harness.adapter.max_active == parallel  # type: ignore[attr-defined]
    harness.send(None)
    assert await harness.exit_code() == EXIT_OK


async def test_duplicate_request_id_is_refused(fake: Harness) -> None:
    fake.send(Transcribe(id=30, audio=AUDIO, prompt="sleep"))
    await asyncio.sleep(0.02)
    fake.send(Transcribe(id=30, audio=AUDIO))
    await fake.error(30, "bad_request")
    fake.send(Cancel(id=30))
    await fake.error(30, "cancelled")


async def test_unload_then_inference_is_not_loaded(fake: Harness) -> None:
    fake.send(Unload(id=40))
    fake.send(Transcribe(id=41, audio=AUDIO))
    await fake.error(41, "not_loaded")
    assert fake.adapter.unloads == 1  # type: ignore[attr-defined]


async def test_load_waits_for_running_inference(fake: Harness) -> None:
    fake.send(Transcribe(id=50, audio=AUDIO, prompt="overlap"))
    fake.send(Load(id=51, model_dir="/models/other"))
    assert (await fake.expect(Transcript)).id == 50
    assert (await fake.expect(Loaded)).id == 51
    assert fake.adapter.unloads == 1  # type: ignore[attr-defined]


async def test_shutdown_cancels_in_flight_and_unloads(fake: Harness) -> None:
    fake.send(Transcribe(id=60, audio=AUDIO, prompt="sleep"))
    await asyncio.sleep(0.02)
    fake.send(Shutdown())
    await fake.error(60, "cancelled")
    assert await fake.exit_code() == EXIT_OK
    assert fake.adapter.unloads == 1  # type: ignore[attr-defined]


async def test_eof_exits(fake: Harness) -> None:
    fake.send(None)
    assert await fake.exit_code() == EXIT_OK


async def test_parallel_must_be_positive() -> None:
    with pytest.raises(ValueError, match="parallel"):
        RunnerHost(FakeAdapter(), asyncio.Queue[RunnerMessage]().put, parallel=0)


async def test_cancelled_load_answers_after_the_thread_and_leaves_nothing_loaded() -> None:
    harness = await started(load=False)
    harness.send(Load(id=1, model_dir="/models/slow", options={"sleep": 0.3}))
    await asyncio.sleep(0.05)
    harness.send(Cancel(id=1))
    await harness.error(1, "cancelled")
    assert harness.adapter.unloads == 1  # type: ignore[attr-defined]
    harness.send(Transcribe(id=2, audio=AUDIO))
    await harness.error(2, "not_loaded")
    harness.send(None)
    assert await harness.exit_code() == EXIT_OK

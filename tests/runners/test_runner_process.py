"""The runner over real pipes: ``serve`` in-process on os.pipe, and ``python -m vox_runner``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runner_client import FrameClient, RunnerProcess
from runner_fakes import FakeAdapter
from vox_protocol import (
    PROTOCOL_VERSION,
    AudioChunk,
    Cancel,
    Error,
    FrameDecoder,
    FrameEncoder,
    Hello,
    ListVoices,
    Load,
    Loaded,
    RunnerMessage,
    Shutdown,
    SynthesisDone,
    Synthesize,
    Transcribe,
    Transcript,
    Voices,
    Welcome,
)
from vox_runner.adapter import Adapter
from vox_runner.host import EXIT_ADAPTER, EXIT_OK, EXIT_PROTOCOL, EXIT_VERSION, serve

FAKE = "runner_fakes:FakeAdapter"
AUDIO = b"\x00" * 4 * 16000


# ---------------------------------------------------------------- serve() on os.pipe


@contextlib.asynccontextmanager
async def piped(
    adapter: str | type[Adapter],
) -> AsyncIterator[tuple[FrameClient, asyncio.Task[int]]]:
    """``serve`` in this process on two os.pipe pairs, and a client on the other ends."""
    to_runner_r, to_runner_w = os.pipe()
    from_runner_r, from_runner_w = os.pipe()
    served = asyncio.create_task(serve(adapter, to_runner_r, from_runner_w))

    def write_all(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(to_runner_w, view) :]

    async def write(data: bytes) -> None:
        await asyncio.to_thread(write_all, data)

    async def read() -> bytes:
        return await asyncio.to_thread(os.read, from_runner_r, 1 << 16)

    try:
        yield FrameClient(read, write), served
    finally:
        os.close(to_runner_w)
        await asyncio.wait_for(served, 10)
        os.close(from_runner_r)


async def test_serve_over_pipes_with_large_frames() -> None:
    async with piped(FakeAdapter) as (client, served):
        await client.hello()
        await client.send(Load(id=1, model_dir="/m"))
        await client.expect(Loaded)
        # 8 MB each way: far beyond a pipe buffer, so both flow-control paths are used.
        big = b"\x00" * (8 << 20)
        await client.send(Transcribe(id=2, audio=big))
        assert (await client.expect(Transcript)).text == f"{len(big) // 4} samples"
        await client.send(Shutdown())
        assert await client.closed()
        assert await asyncio.wait_for(served, 10) == EXIT_OK


async def test_serve_reports_a_missing_adapter_after_hello() -> None:
    async with piped("no-such-adapter") as (client, served):
        await client.send(Hello(protocol_version=PROTOCOL_VERSION))
        error = await client.expect(Error)
        assert error.code == "internal"
        assert "unknown adapter 'no-such-adapter'; available:" in error.message
        assert await asyncio.wait_for(served, 10) == EXIT_ADAPTER


# ---------------------------------------------------------------- python -m vox_runner


@pytest.fixture
async def runner(runner_env: dict[str, str]) -> AsyncIterator[RunnerProcess]:
    proc = await RunnerProcess.start(runner_env, "--adapter", FAKE, "--log-level", "debug")
    yield proc
    proc.kill()
    await proc.proc.wait()


async def test_process_session(runner: RunnerProcess) -> None:
    client = runner.client
    welcome = await client.hello()
    assert (welcome.adapter, welcome.pid) == ("fake", runner.proc.pid)
    await client.send(Load(id=1, model_dir="/models/fake"))  # the adapter prints on load
    assert (await client.expect(Loaded)).info.providers == ["fake"]
    await client.send(Transcribe(id=2, audio=AUDIO, prompt="print"))  # and writes to fd 1
    assert (await client.expect(Transcript)).text == "16000 samples"
    await client.send(Transcribe(id=3, audio=AUDIO, prompt="boom"))
    error = await client.expect(Error)
    assert (error.id, error.code, error.message) == (3, "inference_failed", "RuntimeError: boom")
    await client.send(Synthesize(id=4, text="One. Two"))
    messages = await client.collect([SynthesisDone, Error])
    assert [type(m) for m in messages] == [AudioChunk, AudioChunk, SynthesisDone]
    await client.send(ListVoices(id=5))
    assert (await client.expect(Voices)).default == "a"
    await client.send(Shutdown())
    assert await client.closed()
    code, stderr = await runner.wait()
    assert code == EXIT_OK
    # Whatever the adapter printed went to the log, not into the frame stream.
    assert "loading (python print)" in stderr
    assert "loading (native write to fd 1)" in stderr
    assert "transcribing (python print)" in stderr
    assert f"vox-runner[{runner.proc.pid}]" in stderr


async def test_process_cancel_during_blocking_inference(runner: RunnerProcess) -> None:
    client = runner.client
    await client.hello()
    await client.send(Load(id=1, model_dir="/m"))
    await client.expect(Loaded)
    await client.send(Transcribe(id=2, audio=AUDIO, prompt="block", temperature=3.0))
    await client.send(ListVoices(id=3))
    assert (await client.expect(Voices)).id == 3  # responsive while a thread infers
    await client.send(Cancel(id=2))
    error = await client.expect(Error, limit=2.0)
    assert (error.id, error.code) == (2, "cancelled")


async def test_process_exits_on_eof_even_with_inference_running(runner: RunnerProcess) -> None:
    client = runner.client
    await client.hello()
    await client.send(Load(id=1, model_dir="/m"))
    await client.expect(Loaded)
    await client.send(Transcribe(id=2, audio=AUDIO, prompt="block", temperature=60.0))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    runner.close_stdin()
    code, stderr = await runner.wait()
    assert code == EXIT_OK
    assert time.monotonic() - started < 10  # does not wait for the 60 s inference thread
    assert "stdin closed" in stderr


async def test_process_version_mismatch(runner: RunnerProcess) -> None:
    await runner.client.send(Hello(protocol_version=PROTOCOL_VERSION + 1))
    error = await runner.client.expect(Error)
    assert (error.id, error.code) == (0, "version_mismatch")
    assert (await runner.wait())[0] == EXIT_VERSION


async def test_process_garbage_frame_is_fatal(runner: RunnerProcess) -> None:
    await runner.client.hello()
    await runner.client.send_raw(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
    error = await runner.client.expect(Error)
    assert (error.id, error.code) == (0, "protocol")
    assert (await runner.wait())[0] == EXIT_PROTOCOL


async def test_process_oversized_frame_is_fatal(runner_env: dict[str, str]) -> None:
    runner = await RunnerProcess.start(runner_env, "--adapter", FAKE, "--max-frame", "1000")
    try:
        await runner.client.hello()
        await runner.client.send(Transcribe(id=2, audio=b"\x00" * 4000))
        error = await runner.client.expect(Error)
        assert (error.id, error.code) == (0, "protocol")
        assert "exceeds the limit of 1000 bytes" in error.message
        assert (await runner.wait())[0] == EXIT_PROTOCOL
    finally:
        runner.kill()


async def test_process_unknown_adapter(runner_env: dict[str, str]) -> None:
    runner = await RunnerProcess.start(runner_env, "--adapter", "runner_fakes:Missing")
    try:
        await runner.client.send(Hello(protocol_version=PROTOCOL_VERSION))
        error = await runner.client.expect(Error)
        assert error.code == "internal"
        assert "runner_fakes:Missing" in error.message
        assert (await runner.wait())[0] == EXIT_ADAPTER
    finally:
        runner.kill()


async def test_process_exits_on_eof_during_a_slow_load(runner: RunnerProcess) -> None:
    await runner.client.hello()
    await runner.client.send(Load(id=1, model_dir="/m", options={"sleep": 60}))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    runner.close_stdin()
    code, _ = await runner.wait()
    assert code == EXIT_OK
    assert time.monotonic() - started < 10


def test_process_on_regular_files(runner_env: dict[str, str], tmp_path: Path) -> None:
    """stdin/stdout that are files (not pipes) use the thread-backed I/O path."""
    requests = tmp_path / "in.bin"
    requests.write_bytes(FrameEncoder().encode(Hello(protocol_version=PROTOCOL_VERSION)))
    replies = tmp_path / "out.bin"
    with requests.open("rb") as stdin, replies.open("wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "vox_runner", "--adapter", FAKE],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=runner_env,
            timeout=30,
            check=False,
        )
    assert done.returncode == EXIT_OK, done.stderr.decode()
    decoder: FrameDecoder[RunnerMessage] = FrameDecoder(RunnerMessage)
    messages = decoder.feed(replies.read_bytes())
    assert [type(m) for m in messages] == [Welcome]

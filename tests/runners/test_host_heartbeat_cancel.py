"""Heartbeats while a request is in flight, and faster-whisper stopping between model calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
from runner_fakes import FakeAdapter
from test_runner_host import Harness
from vox_protocol import (
    PROTOCOL_VERSION,
    Heartbeat,
    Hello,
    Load,
    Loaded,
    Shutdown,
    Transcribe,
    Transcript,
    Welcome,
)
from vox_runner.adapters.faster_whisper import FasterWhisperAdapter, _Interruptible

AUDIO = b"\x00" * 4 * 1600


async def _started(heartbeat_s: float) -> tuple[Harness, Welcome]:
    harness = Harness(FakeAdapter())
    harness.send(Hello(protocol_version=PROTOCOL_VERSION, heartbeat_s=heartbeat_s))
    welcome = await harness.expect(Welcome)
    harness.send(Load(id=1, model_dir="/m", device="cpu"))
    await harness.expect(Loaded)
    return harness, welcome


async def test_a_busy_runner_sends_heartbeats_while_one_call_blocks() -> None:
    harness, welcome = await _started(0.05)
    assert welcome.heartbeat_s == 0.05
    await asyncio.sleep(0.2)
    assert harness.outbox.empty()  # idle: nothing to say
    # One blocking call of 0.5 s, as a long window of real inference.
    harness.send(Transcribe(id=2, audio=AUDIO, prompt="block", temperature=0.5))
    beats = 0
    while not isinstance(message := await harness.recv(), Transcript):
        assert isinstance(message, Heartbeat)
        assert message.in_flight == 1
        beats += 1
    assert beats >= 3
    harness.send(Shutdown())
    await harness.exit_code()


async def test_an_older_control_plane_gets_no_heartbeats() -> None:
    harness, welcome = await _started(0.0)  # Hello without the field
    assert welcome.heartbeat_s == 0.0
    harness.send(Transcribe(id=2, audio=AUDIO, prompt="block", temperature=0.3))
    assert isinstance(await harness.recv(), Transcript)
    harness.send(Shutdown())
    await harness.exit_code()


class _FakeCt2:
    """CTranslate2's Whisper as faster-whisper calls it: one blocking call per step."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def generate(self, *args: Any) -> str:
        self.calls += 1
        self.entered.set()
        assert self.go_on.wait(10)
        return "tokens"


class _FakeWhisper:
    """faster-whisper's WhisperModel: a lazy generator making several model calls per segment."""

    def __init__(self, ct2: _FakeCt2) -> None:
        self.model: Any = ct2
        self.finished = threading.Event()  # the decoding thread left the generator

    def transcribe(self, audio: Any, **options: Any) -> tuple[Iterator[Any], Any]:
        def segments() -> Iterator[Any]:
            try:
                yield from windows()
            finally:
                self.finished.set()

        def windows() -> Iterator[Any]:
            for index in range(5):
                for _ in range(3):  # encode, a fallback decode, word alignment
                    self.model.generate()
                yield SimpleNamespace(
                    start=index * 30.0,
                    end=index * 30.0 + 30.0,
                    text=f" window {index}",
                    words=[],
                    avg_logprob=-0.1,
                    no_speech_prob=0.0,
                )

        info = SimpleNamespace(language="en", language_probability=1.0, duration=150.0)
        return segments(), info


async def test_a_cancelled_transcription_stops_at_the_next_model_call() -> None:
    adapter = FasterWhisperAdapter()
    ct2 = _FakeCt2()
    whisper = _FakeWhisper(ct2)
    whisper.model = _Interruptible(ct2, adapter._local)  # as load() wraps the real one
    adapter._model = whisper
    audio = np.zeros(16000, dtype="<f4").tobytes()
    task = asyncio.create_task(adapter.transcribe(Transcribe(id=7, audio=audio)))
    assert await asyncio.to_thread(ct2.entered.wait, 5)
    task.cancel()  # mid-call, in the first window: the call itself cannot be interrupted
    await asyncio.sleep(0.05)
    ct2.go_on.set()
    assert await asyncio.to_thread(whisper.finished.wait, 5)
    assert ct2.calls == 1  # not the two more calls of its window, nor the four windows left


async def test_an_uncancelled_transcription_reads_every_segment() -> None:
    adapter = FasterWhisperAdapter()
    ct2 = _FakeCt2()
    ct2.go_on.set()
    whisper = _FakeWhisper(ct2)
    whisper.model = _Interruptible(ct2, adapter._local)
    adapter._model = whisper
    audio = np.zeros(16000, dtype="<f4").tobytes()
    transcript = await adapter.transcribe(Transcribe(id=8, audio=audio))
    assert ct2.calls == 15
    assert transcript.text == "window 0 window 1 window 2 window 3 window 4"

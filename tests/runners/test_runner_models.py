"""Real piper and faster-whisper runners, round-tripping speech; skipped unless configured.

Set VOX_TEST_RUNNER_PYTHON to an interpreter with the adapters' libraries (e.g. a venv made
with ``uv pip install ./protocol './runners[faster-whisper,piper]'``), VOX_TEST_PIPER_MODEL
to a dir holding one piper ``*.onnx`` + ``*.onnx.json``, and VOX_TEST_WHISPER_MODEL to a
CTranslate2 Whisper dir (English or multilingual).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from runner_client import FrameClient, RunnerProcess
from vox_protocol import (
    AudioChunk,
    Error,
    ListVoices,
    Load,
    Loaded,
    Shutdown,
    SynthesisDone,
    Synthesize,
    Transcribe,
    Transcript,
    Voices,
)

from tests.conftest import wer

PYTHON = os.environ.get("VOX_TEST_RUNNER_PYTHON", "")
PIPER_DIR = Path(os.environ.get("VOX_TEST_PIPER_MODEL", "/nonexistent"))
WHISPER_DIR = Path(os.environ.get("VOX_TEST_WHISPER_MODEL", "/nonexistent"))

pytestmark = pytest.mark.skipif(
    not (PYTHON and Path(PYTHON).exists() and PIPER_DIR.is_dir() and WHISPER_DIR.is_dir()),
    reason="set VOX_TEST_RUNNER_PYTHON, VOX_TEST_PIPER_MODEL and VOX_TEST_WHISPER_MODEL",
)

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs into the forest to find food."


class Running(NamedTuple):
    runner: RunnerProcess
    loaded: Loaded

    @property
    def client(self) -> FrameClient:
        return self.runner.client


@contextlib.asynccontextmanager
async def _running(env: dict[str, str], adapter: str, model: Path) -> AsyncIterator[Running]:
    runner = await RunnerProcess.start(env, "--adapter", adapter, python=PYTHON)
    try:
        await runner.client.hello()
        await runner.client.send(Load(id=1, model_dir=str(model)))
        loaded = await runner.client.expect(Loaded, limit=120)
        yield Running(runner, loaded)
        await runner.client.send(Shutdown())
        assert (await runner.wait())[0] == 0
    finally:
        runner.kill()


@pytest.fixture
async def piper(runner_env: dict[str, str]) -> AsyncIterator[Running]:
    async with _running(runner_env, "vox_runner.adapters.piper:PiperAdapter", PIPER_DIR) as it:
        yield it


@pytest.fixture
async def whisper(runner_env: dict[str, str]) -> AsyncIterator[Running]:
    adapter = "vox_runner.adapters.faster_whisper:FasterWhisperAdapter"
    async with _running(runner_env, adapter, WHISPER_DIR) as it:
        yield it


def _piper_rate() -> int:
    config = json.loads(next(PIPER_DIR.glob("*.onnx.json")).read_text())
    return int(config["audio"]["sample_rate"])


async def test_piper_speech_transcribed_by_whisper(piper: Running, whisper: Running) -> None:
    rate = _piper_rate()
    info = piper.loaded.info
    assert info.sample_rate == rate
    assert info.providers
    assert info.default_voice in [v.id for v in info.voices]

    started = time.perf_counter()
    await piper.client.send(Synthesize(id=2, text=TEXT))
    messages = await piper.client.collect([SynthesisDone, Error])
    chunks = [m for m in messages if isinstance(m, AudioChunk)]
    assert isinstance(messages[-1], SynthesisDone), messages[-1]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert chunks[0].text == "The quick brown fox jumps over the lazy dog."
    assert len(chunks) == 2
    print(f"piper: {len(chunks)} chunks in {time.perf_counter() - started:.3f}s")

    pcm = np.frombuffer(b"".join(c.audio for c in chunks), dtype="<i2").astype(np.float32)
    pcm /= 32768.0
    count = int(len(pcm) * 16000 / rate)
    audio = np.interp(np.arange(count) * rate / 16000, np.arange(len(pcm)), pcm)
    await whisper.client.send(
        Transcribe(id=3, audio=audio.astype("<f4").tobytes(), word_timestamps=True)
    )
    transcript = await whisper.client.expect(Transcript, limit=120)
    assert wer(TEXT, transcript.text) < 0.2, transcript.text
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(count / 16000, abs=0.01)
    assert transcript.segments
    assert transcript.segments[0].words


async def test_piper_bad_requests(piper: Running) -> None:
    await piper.client.send(ListVoices(id=2))
    voices = await piper.client.expect(Voices)
    assert voices.default in [v.id for v in voices.voices]
    for request_id, request in enumerate(
        [Synthesize(id=0, text="  "), Synthesize(id=0, text="Hi.", voice="nobody")], start=3
    ):
        request.id = request_id
        await piper.client.send(request)
        error = await piper.client.expect(Error)
        assert (error.id, error.code) == (request_id, "bad_request")
    assert "available: " in error.message


async def test_whisper_rejects_other_sample_rates(whisper: Running) -> None:
    await whisper.client.send(Transcribe(id=2, audio=b"\x00" * 4000, sample_rate=8000))
    error = await whisper.client.expect(Error)
    assert (error.id, error.code) == (2, "bad_request")
    await whisper.client.send(Transcribe(id=3, audio=b""))
    assert (await whisper.client.expect(Transcript)).text == ""

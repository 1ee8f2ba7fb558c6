"""RunnerClient.vad and inference.detect_speech against a real runner process (a fake VAD
adapter): the typed reply, per-stream state in the runner, end drops it, and an adapter that
is no VAD answers unsupported."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from vox_control import inference
from vox_control.runner_client import RunnerClient, RunnerRequestError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [ROOT / "runners" / "src", ROOT / "protocol" / "src", HERE, ROOT / "tests" / "runners"]
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    return env


async def _runner(adapter: str) -> RunnerClient:
    runner = await RunnerClient.start(
        "vad", Path(sys.executable), adapter, env=_env(), max_frame=1 << 24
    )
    await runner.load("/models/fake")
    return runner


async def test_probabilities_per_frame_with_state_per_stream() -> None:
    runner = await _runner("vad_fakes:FakeVad")
    try:
        model = SimpleNamespace(runner=runner, info=SimpleNamespace(sample_rate=16000))
        loud = np.full(700, 0.3, np.float32)  # one frame and 188 samples carried over
        first = await inference.detect_speech(model, loud, 16000, "a", reset=True)
        assert first.probabilities == [1.0]
        assert (first.frame_samples, first.sample_rate) == (512, 16000)
        other = await inference.detect_speech(model, np.zeros(400, np.float32), 16000, "b")
        assert other.probabilities == []  # stream b is its own: 400 samples, no whole frame
        more = await inference.detect_speech(model, np.zeros(324, np.float32), 16000, "a")
        assert more.probabilities == [1.0]  # 188 loud + 324 quiet samples: RMS over 0.05
        await inference.detect_speech(model, np.zeros(0, np.float32), 16000, "a", end=True)
        fresh = await inference.detect_speech(model, np.zeros(512, np.float32), 16000, "a")
        assert fresh.probabilities == [0.0]
        # Audio at another rate is resampled to the VAD's own first: 1 s at 8 kHz, 31 frames.
        slow = await inference.detect_speech(model, np.full(8000, 0.3, np.float32), 8000, "c")
        assert len(slow.probabilities) == 16000 // 512
    finally:
        await runner.close(grace=0.5)


async def test_an_adapter_that_is_no_vad_answers_unsupported() -> None:
    runner = await _runner("runner_fakes:FakeAdapter")
    try:
        with pytest.raises(RunnerRequestError) as info:
            await runner.vad(b"\x00" * 2048, 16000, stream="s")
        assert info.value.code == "unsupported"
    finally:
        await runner.close(grace=0.5)

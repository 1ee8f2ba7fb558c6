"""A VAD adapter for runner tests: speech where a 512-sample frame's RMS is over 0.05, with the
stream bookkeeping (samples short of a frame carried per stream) the Silero adapter has."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from vox_protocol import DetectSpeech, ModelInfo, SpeechProbabilities
from vox_runner.adapter import Adapter


class FakeVad(Adapter):
    name: ClassVar[str] = "fake-vad"
    kind: ClassVar[Literal["stt", "tts", "vad"]] = "vad"

    def __init__(self) -> None:
        self.pending: dict[str, np.ndarray] = {}

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        return ModelInfo(adapter=self.name, kind="vad", sample_rate=16000)

    def unload(self) -> None:
        self.pending.clear()

    async def detect_speech(self, request: DetectSpeech) -> SpeechProbabilities:
        if request.end:
            self.pending.pop(request.stream, None)
            return SpeechProbabilities(id=request.id, probabilities=[])
        before = np.zeros(0, np.float32) if request.reset else self.pending.get(request.stream)
        audio = np.concatenate(
            [
                before if before is not None else np.zeros(0, np.float32),
                np.frombuffer(request.audio, "<f4"),
            ]
        )
        whole = len(audio) // 512 * 512
        self.pending[request.stream] = audio[whole:]
        rms = np.sqrt(np.mean(audio[:whole].reshape(-1, 512) ** 2, axis=1))
        return SpeechProbabilities(id=request.id, probabilities=[float(r > 0.05) for r in rms])

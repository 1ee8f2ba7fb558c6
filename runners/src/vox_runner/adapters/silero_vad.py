"""Silero VAD (the ONNX file faster-whisper ships): speech probability per 32 ms frame.

Streaming state lives here, keyed by the control plane's stream id: Silero's LSTM state
(h, c), the last 64 samples (the model's context) and the samples short of a whole frame.
Sending a window of context with every call instead would cost the model that many extra
frames per call and still not reproduce the LSTM state (one thread, a 160 ms piece: 0.27 ms
with the state kept, 2.9 ms with 1 s of context, 7.4 ms with 2 s); the state is 1 KiB a stream.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from vox_protocol import DetectSpeech, ModelInfo, SpeechProbabilities

from vox_runner.adapter import Adapter, AdapterError
from vox_runner.adapters.ort import CPU, session_options

RATE = 16000
FRAME = 512  # samples per probability at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees before each frame
MAX_STREAMS = 1024  # oldest state is dropped past this (a control plane that never said end)
MODEL_FILE = "silero_vad_v6.onnx"


@dataclass
class _Stream:
    h: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    c: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


class SileroVadAdapter(Adapter):
    name: ClassVar[str] = "silero-vad"
    kind: ClassVar[Literal["stt", "tts", "vad"]] = "vad"

    def __init__(self) -> None:
        self._session: Any = None
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        # One stream's frames must run in order; the session itself is thread-safe.
        self._lock = threading.Lock()

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        import onnxruntime as ort

        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise AdapterError("load_failed", f"{path} is missing")
        opts = session_options(threads=1)  # a 32 ms frame is microseconds of work
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), opts, providers=[CPU])
        return ModelInfo(adapter=self.name, kind="vad", sample_rate=RATE, providers=[CPU])

    def unload(self) -> None:
        self._session = None
        self._streams.clear()

    async def detect_speech(self, request: DetectSpeech) -> SpeechProbabilities:
        if request.sample_rate != RATE:
            raise AdapterError("bad_request", f"Silero VAD takes {RATE} Hz audio")
        if len(request.audio) % 4:
            raise AdapterError("bad_request", "audio must be float32 samples")
        probabilities = await asyncio.to_thread(self._run, request)
        return SpeechProbabilities(
            id=request.id, probabilities=probabilities, frame_samples=FRAME, sample_rate=RATE
        )

    def _run(self, request: DetectSpeech) -> list[float]:
        with self._lock:
            if request.end:
                self._streams.pop(request.stream, None)
                return []
            stream = None if request.reset else self._streams.pop(request.stream, None)
            stream = stream or _Stream()
            self._streams[request.stream] = stream
            while len(self._streams) > MAX_STREAMS:
                self._streams.popitem(last=False)
            audio = np.concatenate(
                [stream.pending, np.frombuffer(request.audio, dtype="<f4").astype(np.float32)]
            )
            whole = len(audio) // FRAME * FRAME
            stream.pending = audio[whole:].copy()
            if not whole:
                return []
            frames = audio[:whole].reshape(-1, FRAME)
            # Each frame is preceded by the previous frame's last CONTEXT samples.
            contexts = np.concatenate([stream.context[None, :], frames[:-1, -CONTEXT:]])
            batch = np.concatenate([contexts, frames], axis=1)
            out, stream.h, stream.c = self._session.run(
                None, {"input": batch, "h": stream.h, "c": stream.c}
            )
            stream.context = frames[-1, -CONTEXT:].copy()
            return [float(p) for p in np.asarray(out).reshape(-1)]

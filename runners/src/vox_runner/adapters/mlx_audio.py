"""mlx-audio adapters for Apple Silicon: Kokoro (TTS) and Whisper (STT) on the Metal GPU.

Import-guarded: mlx runs on macOS arm64 only, so on any other host ``load`` fails with that
reason and the tests skip. Unverified on this project's Linux machines. Model directories are
the MLX conversions (``mlx-community/Kokoro-82M-bf16``, ``mlx-community/whisper-*-mlx``).
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from vox_protocol import ModelInfo, Segment, Synthesize, Transcribe, Transcript, Voice

from vox_runner.adapter import Adapter, AdapterError, SynthChunk, iterate_in_thread, option_str
from vox_runner.adapters.gpu import to_pcm16
from vox_runner.adapters.kokoro import MAX_SPEED, MIN_SPEED


def apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def require_mlx() -> None:
    """Raise AdapterError unless mlx-audio can run here."""
    if not apple_silicon():
        raise AdapterError(
            "load_failed",
            f"mlx-audio needs Apple Silicon (macOS arm64); this host is "
            f"{platform.system()} {platform.machine()}",
        )
    try:
        import mlx.core  # noqa: F401
        import mlx_audio  # noqa: F401
    except ImportError as exc:
        raise AdapterError("load_failed", f"mlx-audio is not installed: {exc}") from exc


def _info(adapter: Adapter, rate: int, **extra: Any) -> ModelInfo:
    import mlx.core as mx

    return ModelInfo(
        adapter=adapter.name,
        kind=adapter.kind,
        sample_rate=rate,
        device="mps",
        providers=[f"mlx:{mx.default_device()}"],
        **extra,
    )


class MlxKokoroAdapter(Adapter):
    name: ClassVar[str] = "mlx-kokoro"
    kind: ClassVar[Literal["stt", "tts"]] = "tts"

    def __init__(self) -> None:
        self._model: Any = None
        self._voices: list[str] = []
        self._lang = "a"

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        require_mlx()
        from mlx_audio.tts.utils import load_model

        self._model = load_model(str(model_dir))
        self._voices = sorted(p.stem for p in (model_dir / "voices").glob("*.safetensors"))
        self._lang = option_str(options, "lang_code", "a") or "a"
        voices = [Voice(id=v, name=v) for v in self._voices]
        default = self._voices[0] if self._voices else None
        return _info(self, 24000, voices=voices, default_voice=default)

    def unload(self) -> None:
        self._model = None

    async def voices(self) -> list[Voice]:
        return [Voice(id=v, name=v) for v in self._voices]

    def synthesize(self, request: Synthesize) -> AsyncIterator[SynthChunk]:
        if self._model is None:
            raise AdapterError("not_loaded", "no mlx kokoro model is loaded")
        if not request.text.strip():
            raise AdapterError("bad_request", "text is empty")
        if not MIN_SPEED <= request.speed <= MAX_SPEED:
            raise AdapterError("bad_request", f"speed must be {MIN_SPEED}-{MAX_SPEED}")
        voice = request.voice or (self._voices[0] if self._voices else None)
        if voice not in self._voices:
            raise AdapterError("bad_request", f"unknown voice {voice!r}")
        return iterate_in_thread(self._generate(request.text, voice, request.speed))

    def _generate(self, text: str, voice: str, speed: float) -> Iterator[SynthChunk]:
        # The control plane sends one sentence per request (vox_control.text.sentences).
        for result in self._model.generate(
            text=text, voice=voice, speed=speed, lang_code=self._lang
        ):
            audio = np.asarray(result.audio, dtype=np.float32)
            yield SynthChunk(audio=to_pcm16(audio), sample_rate=24000, text=text)


class MlxWhisperAdapter(Adapter):
    name: ClassVar[str] = "mlx-whisper"
    kind: ClassVar[Literal["stt", "tts"]] = "stt"

    def __init__(self) -> None:
        self._model: Any = None

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        require_mlx()
        from mlx_audio.stt.utils import load_model

        self._model = load_model(str(model_dir))
        return _info(self, 16000)

    def unload(self) -> None:
        self._model = None

    async def transcribe(self, request: Transcribe) -> Transcript:
        model = self._model
        if model is None:
            raise AdapterError("not_loaded", "no mlx whisper model is loaded")
        if request.sample_rate != 16000:
            raise AdapterError("bad_request", "audio must be 16000 Hz mono float32")
        import mlx.core as mx

        audio = mx.array(np.frombuffer(request.audio, dtype="<f4"))
        kwargs: dict[str, Any] = {"task": request.task, "word_timestamps": request.word_timestamps}
        if request.language:
            kwargs["language"] = request.language
        result = await asyncio.to_thread(model.generate, audio, **kwargs)
        segments = [
            Segment(start=float(s["start"]), end=float(s["end"]), text=str(s["text"]))
            for s in getattr(result, "segments", None) or []
        ]
        return Transcript(
            id=request.id,
            text=str(result.text).strip(),
            language=getattr(result, "language", None) or request.language,
            duration=len(request.audio) / 4 / 16000,
            segments=segments,
        )

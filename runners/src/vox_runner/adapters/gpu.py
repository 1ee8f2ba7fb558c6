"""Shared plumbing of the heavy PyTorch TTS families (fish-speech, orpheus, dia, sesame).

They run only on a CUDA GPU: loading refuses any other device with a clear reason instead of
crawling on a CPU for minutes per sentence. Each adapter's library is imported in ``load`` so
this module and the adapters import without torch.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from vox_protocol import ModelInfo, Synthesize, Voice

from vox_runner.adapter import Adapter, AdapterError, SynthChunk, iterate_in_thread, parse_device

log = logging.getLogger("vox_runner.adapters.gpu")


def cuda_device(device: str, family: str) -> str:
    """The torch device string for ``device``, or AdapterError when no CUDA GPU is usable."""
    kind, index = parse_device(device)
    if kind == "cpu":
        raise AdapterError("load_failed", f"{family} runs only on a CUDA GPU; device is cpu")
    try:
        import torch
    except ImportError as exc:
        raise AdapterError("load_failed", f"{family} needs PyTorch: {exc}") from exc
    if not torch.cuda.is_available():
        raise AdapterError("load_failed", f"{family} runs only on a CUDA GPU and torch sees none")
    if index >= torch.cuda.device_count():
        raise AdapterError(
            "load_failed", f"no CUDA device {index} (torch sees {torch.cuda.device_count()})"
        )
    return f"cuda:{index}"


def to_pcm16(audio: Any) -> bytes:
    """A float waveform (numpy or torch, any shape) -> mono int16 little-endian bytes."""
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    pcm: bytes = np.clip(samples * 32767.0, -32768, 32767).astype("<i2").tobytes()
    return pcm


class GpuTtsAdapter(Adapter):
    """A TTS family on PyTorch + CUDA: subclasses load their model and speak one sentence."""

    kind: ClassVar[Literal["stt", "tts"]] = "tts"
    family: ClassVar[str]
    sample_rate: ClassVar[int]
    voice_ids: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._model: Any = None
        self._device = "cuda:0"

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        self._device = cuda_device(device, self.family)
        self._model = self.load_model(model_dir, self._device, options)
        import torch

        name = torch.cuda.get_device_name(self._device)
        return ModelInfo(
            adapter=self.name,
            kind=self.kind,
            sample_rate=self.sample_rate,
            device=self._device,
            providers=[f"torch:{self._device}:{name}"],
            voices=[Voice(id=v, name=v) for v in self.voice_ids],
            default_voice=self.voice_ids[0] if self.voice_ids else None,
        )

    def unload(self) -> None:
        self._model = None
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # torch gone or never imported: nothing cached
            pass

    async def voices(self) -> list[Voice]:
        return [Voice(id=v, name=v) for v in self.voice_ids]

    def synthesize(self, request: Synthesize) -> AsyncIterator[SynthChunk]:
        if self._model is None:
            raise AdapterError("not_loaded", f"no {self.family} model is loaded")
        if not request.text.strip():
            raise AdapterError("bad_request", "text is empty")
        voice = request.voice or (self.voice_ids[0] if self.voice_ids else None)
        if self.voice_ids and voice not in self.voice_ids:
            raise AdapterError(
                "bad_request", f"unknown voice {voice!r}; available: {', '.join(self.voice_ids)}"
            )
        return iterate_in_thread(self._generate(request.text, voice))

    def _generate(self, text: str, voice: str | None) -> Iterator[SynthChunk]:
        # The control plane sends one sentence per request (vox_control.text.sentences).
        for audio in self.speak(text, voice):
            yield SynthChunk(audio=audio, sample_rate=self.sample_rate, text=text)

    def load_model(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def speak(self, sentence: str, voice: str | None) -> Iterator[bytes]:
        """Blocking: PCM16 pieces of one sentence."""
        raise NotImplementedError

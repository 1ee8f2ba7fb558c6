"""Sesame CSM 1B through Hugging Face transformers (CsmForConditionalGeneration); CUDA only.

Unverified on real weights: no GPU and no CSM weights reach this project's machines.
Voices are CSM's speaker ids "0" and "1" (the text is prefixed ``[0]`` / ``[1]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from vox_runner.adapters.gpu import GpuTtsAdapter, to_pcm16


class SesameAdapter(GpuTtsAdapter):
    name: ClassVar[str] = "sesame"
    family: ClassVar[str] = "Sesame CSM"
    sample_rate: ClassVar[int] = 24000
    voice_ids: ClassVar[tuple[str, ...]] = ("0", "1")

    def load_model(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> Any:
        from transformers import AutoProcessor, CsmForConditionalGeneration

        self._processor = AutoProcessor.from_pretrained(str(model_dir), local_files_only=True)
        return CsmForConditionalGeneration.from_pretrained(
            str(model_dir), device_map=device, local_files_only=True
        )

    def speak(self, sentence: str, voice: str | None) -> Iterator[bytes]:
        import torch

        inputs = self._processor(f"[{voice or '0'}]{sentence}", add_special_tokens=True)
        inputs = inputs.to(self._device)
        with torch.inference_mode():
            audio = self._model.generate(**inputs, output_audio=True)
        yield to_pcm16(audio[0])

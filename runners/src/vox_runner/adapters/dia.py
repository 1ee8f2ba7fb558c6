"""Nari Labs Dia 1.6B through Hugging Face transformers (DiaForConditionalGeneration); CUDA only.

Unverified on real weights: no GPU and no Dia weights reach this project's machines. Dia
speaks dialogue: text without ``[S1]``/``[S2]`` tags is given to the voice's speaker tag.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from vox_runner.adapter import option_int
from vox_runner.adapters.gpu import GpuTtsAdapter, to_pcm16


class DiaAdapter(GpuTtsAdapter):
    name: ClassVar[str] = "dia"
    family: ClassVar[str] = "Dia"
    sample_rate: ClassVar[int] = 44100
    voice_ids: ClassVar[tuple[str, ...]] = ("S1", "S2")

    def load_model(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> Any:
        from transformers import AutoProcessor, DiaForConditionalGeneration

        self._max_new_tokens = option_int(options, "max_new_tokens", 3072)
        self._processor = AutoProcessor.from_pretrained(str(model_dir), local_files_only=True)
        return DiaForConditionalGeneration.from_pretrained(
            str(model_dir), local_files_only=True
        ).to(device)

    def speak(self, sentence: str, voice: str | None) -> Iterator[bytes]:
        import torch

        text = sentence if sentence.lstrip().startswith("[S") else f"[{voice or 'S1'}] {sentence}"
        inputs = self._processor(text=[text], padding=True, return_tensors="pt").to(self._device)
        with torch.inference_mode():
            codes = self._model.generate(**inputs, max_new_tokens=self._max_new_tokens)
        audio = self._processor.batch_decode(codes)
        yield to_pcm16(audio[0])

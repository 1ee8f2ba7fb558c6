"""Canopy Labs Orpheus 3B through its official package orpheus-speech (vLLM + SNAC); CUDA only.

Unverified on real weights: no GPU and no Orpheus weights reach this project's machines.
orpheus-speech loads the SNAC codec (``hubertsiuzdak/snac_24khz``) from the Hugging Face
cache when it is imported, so that codec must be in the cache of a host that runs offline.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from vox_runner.adapter import option_float, option_int
from vox_runner.adapters.gpu import GpuTtsAdapter

VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")


class OrpheusAdapter(GpuTtsAdapter):
    name: ClassVar[str] = "orpheus"
    family: ClassVar[str] = "Orpheus"
    sample_rate: ClassVar[int] = 24000
    voice_ids: ClassVar[tuple[str, ...]] = VOICES

    def load_model(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> Any:
        from orpheus_tts import OrpheusModel

        self._temperature = option_float(options, "temperature", 0.6)
        self._max_tokens = option_int(options, "max_tokens", 2000)
        # A local directory passes through its name mapping and is handed to vLLM as is.
        return OrpheusModel(model_name=str(model_dir), tokenizer=str(model_dir))

    def speak(self, sentence: str, voice: str | None) -> Iterator[bytes]:
        # generate_speech yields int16 PCM pieces (24 kHz) as the codec decodes them.
        yield from self._model.generate_speech(
            prompt=sentence,
            voice=voice or VOICES[0],
            temperature=self._temperature,
            max_tokens=self._max_tokens,
        )

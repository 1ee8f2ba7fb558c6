"""The "tone" Vox adapter: speech made of one sine tone per character, for tutorials and tests.

The model directory holds ``tone.json``: ``sample_rate`` (Hz), ``char_ms`` (length of one
character) and ``voices`` (voice id -> base pitch in Hz). Each letter or digit is a tone of the
base pitch raised by its code point modulo 12 semitones; anything else is silence. Text is
spoken sentence by sentence, one chunk each, as the Vox adapter contract asks.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from vox_protocol import ModelInfo, Synthesize, Voice
from vox_runner.adapter import Adapter, AdapterError, SynthChunk, iterate_in_thread, parse_device

__all__ = ["ToneAdapter"]

_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_MAX_CHARS = 100_000  # bounded work for bounded input: about 100 minutes of audio


class ToneAdapter(Adapter):
    name: ClassVar[str] = "tone"
    kind: ClassVar[Literal["stt", "tts"]] = "tts"

    def __init__(self) -> None:
        self._rate = 0
        self._char_samples = 0
        self._voices: dict[str, float] = {}

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        parse_device(device)  # raises AdapterError("bad_request") on a device it cannot name
        try:
            config = json.loads((model_dir / "tone.json").read_text(encoding="utf-8"))
            rate = int(config["sample_rate"])
            voices = {str(k): float(v) for k, v in dict(config["voices"]).items()}
            char_ms = float(config.get("char_ms", 60))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AdapterError("load_failed", f"tone.json is missing or invalid: {exc}") from exc
        if not voices or not 8000 <= rate <= 48000 or not 10 <= char_ms <= 1000:
            raise AdapterError("load_failed", "tone.json needs voices, a rate and char_ms")
        self._rate, self._voices = rate, voices
        self._char_samples = int(rate * char_ms / 1000)
        # Numpy computes on the CPU whatever was asked; the providers say so honestly.
        return ModelInfo(
            adapter=self.name,
            kind=self.kind,
            sample_rate=rate,
            device="cpu",
            providers=["numpy:cpu"],
            languages=["en"],
            voices=[Voice(id=v, name=v) for v in voices],
            default_voice=next(iter(voices)),
        )

    def unload(self) -> None:
        self._voices = {}

    async def voices(self) -> list[Voice]:
        return [Voice(id=v, name=v) for v in self._voices]

    def synthesize(self, request: Synthesize) -> AsyncIterator[SynthChunk]:
        if not self._voices:
            raise AdapterError("not_loaded", "no model is loaded")
        voice = request.voice or next(iter(self._voices))
        if voice not in self._voices:
            raise AdapterError("bad_request", f"unknown voice {voice!r}")
        if not request.text.strip() or len(request.text) > _MAX_CHARS:
            raise AdapterError("bad_request", f"text must be 1 to {_MAX_CHARS} characters")
        if not 0.25 <= request.speed <= 4.0:
            raise AdapterError("bad_request", "speed must be between 0.25 and 4")
        # Blocking numpy work runs in a worker thread, one sentence per step, so a Cancel
        # stops it between sentences and the event loop never waits on it.
        return iterate_in_thread(self._chunks(request.text, self._voices[voice], request.speed))

    def _chunks(self, text: str, base: float, speed: float) -> Iterator[SynthChunk]:
        for match in _SENTENCE.finditer(text):
            sentence = match.group().strip()
            if sentence:
                yield SynthChunk(self._render(sentence, base, speed), self._rate, sentence)

    def _render(self, sentence: str, base: float, speed: float) -> bytes:
        n = max(int(self._char_samples / speed), 1)
        t = np.arange(n, dtype=np.float32) / self._rate
        fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * self._rate))
        pieces = []
        for char in sentence:
            if char.isalnum():
                pitch = base * 2 ** ((ord(char.lower()) % 12) / 12)
                pieces.append(0.4 * np.sin(2 * np.pi * pitch * t) * fade)
            else:
                pieces.append(np.zeros(n, dtype=np.float32))
        audio = np.concatenate(pieces)
        return (audio * 32767).astype("<i2").tobytes()

"""NVIDIA Parakeet TDT (0.6b v2 English, v3 25 languages) through onnx-asr's ONNX runtime.

Files (istupakov/parakeet-tdt-0.6b-v*-onnx): ``config.json`` (model_type nemo-conformer-tdt),
``encoder-model[.int8].onnx``, ``decoder_joint-model[.int8].onnx``, ``vocab.txt``, read by
onnx-asr from the model directory only (never the Hub). Load options: ``quantization``
(``int8`` picks the ``*.int8.onnx`` files; by default whatever the files are) and
``threads``. Parakeet neither translates nor takes a language: a request's language is
only checked against the ``languages`` option (comma-separated, from the catalog).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from vox_protocol import ModelInfo, Segment, Transcribe, Transcript, Word

from vox_runner.adapter import Adapter, AdapterError, option_int, option_str
from vox_runner.adapters import ort

SAMPLE_RATE = 16000
_SENTENCE_END = (".", "?", "!")


def words_from_tokens(
    tokens: list[str], starts: list[float], end: float, step: float
) -> list[Word]:
    """Join sub-word tokens into words; a token starting with a space starts a new word.

    A word runs from its first token's time to the next word's first token (or, for the
    last, one encoder step after its last token, capped at the audio's end).
    """
    words: list[tuple[str, float, float]] = []
    for token, start in zip(tokens, starts, strict=True):
        if not token.strip():
            continue
        if token.startswith(" ") or not words:
            words.append((token.strip(), start, start))
        else:
            text, first, _ = words[-1]
            words[-1] = (text + token, first, start)
    result = []
    for i, (text, start, last) in enumerate(words):
        stop = words[i + 1][1] if i + 1 < len(words) else min(end, last + step)
        result.append(Word(start=round(start, 3), end=round(max(stop, start), 3), word=" " + text))
    return result


def segments_from_words(words: list[Word]) -> list[Segment]:
    """Cut the words into segments at sentence-ending punctuation."""
    segments: list[Segment] = []
    current: list[Word] = []
    for word in words:
        current.append(word)
        if word.word.rstrip().endswith(_SENTENCE_END):
            segments.append(_segment(current))
            current = []
    if current:
        segments.append(_segment(current))
    return segments


def _segment(words: list[Word]) -> Segment:
    text = "".join(w.word for w in words)
    return Segment(start=words[0].start, end=words[-1].end, text=text, words=list(words))


class ParakeetAdapter(Adapter):
    name: ClassVar[str] = "parakeet"
    kind: ClassVar[Literal["stt", "tts"]] = "stt"

    def __init__(self) -> None:
        self._model: Any = None  # onnx_asr TimestampedResultsAsrAdapter
        self._languages: list[str] = []
        self._step = 0.08

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        import onnx_asr
        import onnxruntime
        from onnx_asr.utils import ModelLoadingError

        config_path = model_dir / "config.json"
        if not config_path.is_file():
            raise AdapterError("load_failed", f"no config.json in {model_dir}")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        model_type = str(config.get("model_type", "nemo-conformer-tdt"))
        providers = ort.providers_for(device, onnxruntime.get_available_providers())
        try:
            model = onnx_asr.load_model(
                model_type,
                model_dir,
                quantization=_quantization(model_dir, option_str(options, "quantization")),
                sess_options=ort.session_options(option_int(options, "threads", 0)),
                providers=providers,
            )
        except ModelLoadingError as exc:
            raise AdapterError("load_failed", f"{model_dir}: {exc}") from exc
        got = ort.checked_providers(_encoder_session(model), device)
        self._step = 0.01 * int(config.get("subsampling_factor", 8))
        # Load options carry scalars only: the catalog's languages come comma-separated.
        listed = option_str(options, "languages", "") or ""
        self._languages = [tag.strip() for tag in listed.split(",") if tag.strip()]
        self._model = model.with_timestamps()
        return ModelInfo(
            adapter=self.name,
            kind=self.kind,
            sample_rate=SAMPLE_RATE,
            device=ort.device_name(got, device),
            providers=got,
            languages=list(self._languages),
        )

    def unload(self) -> None:
        self._model = None

    async def transcribe(self, request: Transcribe) -> Transcript:
        model = self._model
        if model is None:
            raise AdapterError("not_loaded", "no parakeet model is loaded")
        if request.sample_rate != SAMPLE_RATE:
            raise AdapterError(
                "bad_request",
                f"audio must be {SAMPLE_RATE} Hz mono float32, got {request.sample_rate} Hz",
            )
        if len(request.audio) % 4:
            raise AdapterError("bad_request", "audio length is not a whole number of float32s")
        if request.task == "translate":
            raise AdapterError("unsupported", "parakeet transcribes only; it cannot translate")
        if request.language and self._languages and request.language not in self._languages:
            raise AdapterError(
                "bad_request", f"language {request.language!r} is not supported by this model"
            )
        audio = np.frombuffer(request.audio, dtype="<f4")
        duration = audio.size / SAMPLE_RATE
        if audio.size == 0:
            return Transcript(id=request.id, text="", language=request.language, duration=0.0)
        result = await asyncio.to_thread(model.recognize, audio, sample_rate=SAMPLE_RATE)
        words = words_from_tokens(
            list(result.tokens or []), list(result.timestamps or []), duration, self._step
        )
        segments = segments_from_words(words)
        if not request.word_timestamps:
            segments = [Segment(start=s.start, end=s.end, text=s.text) for s in segments]
        return Transcript(
            id=request.id,
            text=result.text.strip(),
            language=request.language
            or (self._languages[0] if len(self._languages) == 1 else None),
            duration=duration,
            segments=segments,
        )


def _quantization(model_dir: Path, requested: str | None) -> str | None:
    """The requested quantization, else the one the files have (a dir with only
    ``encoder-model.int8.onnx`` is int8, one with ``encoder-model.onnx`` is full precision)."""
    if requested:
        return requested
    if (model_dir / "encoder-model.onnx").is_file():
        return None
    found = sorted(model_dir.glob("encoder-model.*.onnx"))
    return found[0].name.removeprefix("encoder-model.").removesuffix(".onnx") if found else None


def _encoder_session(model: Any) -> Any:
    """The encoder's onnxruntime session inside onnx-asr's wrapper (its providers are ours)."""
    asr = getattr(model, "asr", None)
    for attr in ("_encoder", "_model"):
        session = getattr(asr, attr, None)
        if session is not None:
            return session
    raise AdapterError("load_failed", "onnx-asr model has no encoder session to inspect")

"""Kokoro TTS adapter (kokoro-onnx 0.6): one ONNX model plus its voice styles.

Files: one ``*.onnx`` (``onnx/model.onnx`` too) and the voices, either an npz (``voices.npz`` or
kokoro-onnx's ``voices-v1.0.bin``) or a ``voices/`` folder of raw float32 ``<id>.bin`` styles.

Voices: an id from the file, or a blend ``af_bella+af_sky`` (equal parts) or
``af_bella*0.7+af_sky*0.3`` (weights, normalised to sum to 1). Language: the request's, else
the ``lang`` option, else the one the voice id's first letter names (``a`` American English,
``b`` British, ``e`` Spanish, ...), else en-us. Text goes to espeak-ng (bundled by kokoro-onnx)
as given: the control plane sends one sentence per request (vox_control.text.sentences).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from vox_protocol import ModelInfo, Synthesize, Voice, parse_blend

from vox_runner.adapter import (
    Adapter,
    AdapterError,
    SynthChunk,
    iterate_in_thread,
    option_bool,
    option_int,
    option_str,
)
from vox_runner.adapters import ort, ort_cache

log = logging.getLogger("vox_runner.adapters.kokoro")

SAMPLE_RATE = 24000
MIN_SPEED, MAX_SPEED = 0.5, 2.0  # what kokoro-onnx accepts
STYLE_DIM = 256
# Kokoro voice ids start with a letter naming their language (hexgrad/Kokoro-82M VOICES.md).
_VOICE_LANG = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "j": "ja",
    "p": "pt-br",
    "z": "cmn",
}
# Short tags clients send, onto the espeak-ng voice names kokoro-onnx phonemizes with.
_LANG_ALIASES = {"en": "en-us", "fr": "fr-fr", "pt": "pt-br", "zh": "cmn", "zh-cn": "cmn"}


def espeak_language(tag: str) -> str:
    """A client's language tag ("en", "en-US", "pt_BR") -> an espeak-ng voice name."""
    lowered = tag.strip().lower().replace("_", "-")
    return _LANG_ALIASES.get(lowered, lowered)


def find_files(model_dir: Path) -> tuple[Path, Path]:
    """(model.onnx, voices npz or voices/ folder) inside ``model_dir``."""
    models = sorted(model_dir.glob("*.onnx")) or sorted(model_dir.glob("onnx/model*.onnx"))
    if len(models) != 1:
        found = ", ".join(m.name for m in models) or "none"
        raise AdapterError("load_failed", f"expected one *.onnx in {model_dir}, found {found}")
    for name in ("voices.npz", "voices-v1.0.bin"):
        if (model_dir / name).is_file():
            return models[0], model_dir / name
    npz = sorted(model_dir.glob("*.npz"))
    if len(npz) == 1:
        return models[0], npz[0]
    if (model_dir / "voices").is_dir():
        return models[0], model_dir / "voices"
    raise AdapterError("load_failed", f"no voices.npz or voices/ folder in {model_dir}")


def load_styles(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """Voice id -> style table (n, 1, 256): from an npz, or a folder of raw float32 files."""
    if path.is_dir():
        styles = {}
        for file in sorted(path.glob("*.bin")):
            data = np.fromfile(file, dtype="<f4")
            if data.size % STYLE_DIM:
                raise AdapterError("load_failed", f"{file.name} is not a float32 style table")
            styles[file.stem] = data.reshape(-1, 1, STYLE_DIM)
    else:
        with np.load(path) as npz:
            styles = {key: np.asarray(npz[key], dtype=np.float32) for key in npz.files}
    if not styles:
        raise AdapterError("load_failed", f"no voices in {path}")
    return styles


class KokoroAdapter(Adapter):
    name: ClassVar[str] = "kokoro"
    kind: ClassVar[Literal["stt", "tts"]] = "tts"

    def __init__(self) -> None:
        self._kokoro: Any = None  # kokoro_onnx.Kokoro
        self._styles: dict[str, npt.NDArray[np.float32]] = {}
        self._voices: list[Voice] = []
        self._default_voice: str | None = None
        self._lang: str | None = None
        self._languages: set[str] = set()

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        import onnxruntime
        from kokoro_onnx import Kokoro

        model_path, voices_path = find_files(model_dir)
        self._styles = load_styles(voices_path)
        providers = ort.providers_for(device, onnxruntime.get_available_providers())
        threads = option_int(options, "threads", 0)
        session = ort_cache.session(model_path, ort.session_options(threads), providers)
        got = ort.checked_providers(session, device)
        # kokoro-onnx insists on an npz path; styles from a folder are handed over afterwards.
        npz = voices_path if voices_path.is_file() else None
        kokoro = Kokoro.from_session(session, str(npz) if npz else _EmptyNpz.path())
        kokoro.voices = self._styles
        self._kokoro = kokoro
        self._lang = option_str(options, "lang")
        self._languages = _espeak_languages()
        ids = list(self._styles)
        default = option_str(options, "default_voice")
        self._default_voice = default if default in self._styles else ids[0]
        self._voices = [
            Voice(id=v, name=v, language=self._language_for(v), gender=_gender(v)) for v in ids
        ]
        if option_bool(options, "warmup", True):
            self._warm_up()
        languages = sorted(
            {v.language for v in self._voices} | ({self._lang} if self._lang else set())
        )
        return ModelInfo(
            adapter=self.name,
            kind=self.kind,
            sample_rate=SAMPLE_RATE,
            device=ort.device_name(got, device),
            providers=got,
            languages=languages,
            voices=list(self._voices),
            default_voice=self._default_voice,
        )

    def unload(self) -> None:
        self._kokoro = None
        self._styles = {}
        self._voices = []

    async def voices(self) -> list[Voice]:
        return list(self._voices)

    def _language_for(self, voice_id: str) -> str:
        return self._lang or _VOICE_LANG.get(voice_id[:1], "en-us")

    def style(self, spec: str) -> tuple[npt.NDArray[np.float32], str]:
        """The style table for a voice or a blend, and the id whose language it defaults to."""
        try:
            parts = parse_blend(spec)
        except ValueError as exc:
            raise AdapterError("bad_request", str(exc)) from None
        unknown = [vid for vid, _ in parts if vid not in self._styles]
        if unknown:
            available = ", ".join(self._styles)
            raise AdapterError(
                "bad_request", f"unknown voice {unknown[0]!r}; available: {available}"
            )
        if len(parts) == 1:
            return self._styles[parts[0][0]], parts[0][0]
        rows = min(len(self._styles[vid]) for vid, _ in parts)
        blend = sum(self._styles[vid][:rows] * weight for vid, weight in parts)
        return np.asarray(blend, dtype=np.float32), parts[0][0]

    def synthesize(self, request: Synthesize) -> AsyncIterator[SynthChunk]:
        kokoro = self._kokoro
        if kokoro is None:
            raise AdapterError("not_loaded", "no kokoro model is loaded")
        if not request.text.strip():
            raise AdapterError("bad_request", "text is empty")
        if not MIN_SPEED <= request.speed <= MAX_SPEED:
            raise AdapterError(
                "bad_request",
                f"kokoro speaks at speed {MIN_SPEED}-{MAX_SPEED}, not {request.speed}",
            )
        style, first = self.style(request.voice or self._default_voice or "")
        lang = espeak_language(request.language) if request.language else self._language_for(first)
        if self._languages and lang not in self._languages:
            raise AdapterError("bad_request", f"language {request.language!r} is not supported")
        return iterate_in_thread(self._generate(kokoro, request.text, style, request.speed, lang))

    def _generate(
        self, kokoro: Any, text: str, style: npt.NDArray[np.float32], speed: float, lang: str
    ) -> Iterator[SynthChunk]:
        """Blocking: phonemize and synthesize ``text`` as given (the control plane splits)."""
        try:
            audio, _ = kokoro.create(text, voice=style, speed=speed, lang=lang)
        except ValueError as exc:  # nothing speakable in it (punctuation only, ...)
            log.info("nothing to speak in %r: %s", text, exc)
            return
        pcm = np.clip(np.asarray(audio) * 32767.0, -32768, 32767).astype("<i2")
        yield SynthChunk(pcm.tobytes(), SAMPLE_RATE, text=text, last=True)

    def _warm_up(self) -> None:
        # The first ONNX run is several times slower; do not bill it to the first request.
        try:
            style, first = self.style(self._default_voice or "")
            self._kokoro.create("Hi.", voice=style, lang=self._language_for(first))
        except Exception:
            log.warning("kokoro warm-up failed; the first request will be slower", exc_info=True)


def _gender(voice_id: str) -> str:
    return {"f": "female", "m": "male"}.get(voice_id[1:2], "")


def _espeak_languages() -> set[str]:
    try:
        from phonemizer.backend import EspeakBackend

        return set(EspeakBackend.supported_languages())
    except Exception:  # an older phonemizer: let espeak-ng itself refuse unknown ones
        log.debug("cannot list espeak-ng languages", exc_info=True)
        return set()


class _EmptyNpz:
    """A path to an empty npz, for kokoro-onnx's constructor when styles come from a folder."""

    _path: str | None = None

    @classmethod
    def path(cls) -> str:
        if cls._path is None:
            import tempfile

            with tempfile.NamedTemporaryFile(
                prefix="vox-kokoro-", suffix=".npz", delete=False
            ) as handle:
                np.savez(handle, placeholder=np.zeros(1, dtype=np.float32))
            cls._path = handle.name
        return cls._path

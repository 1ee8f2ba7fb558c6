"""Piper TTS adapter (piper-tts 1.8): one ONNX voice model, streamed as piper makes the audio.

Voice ids. A multi-speaker model's voices are the keys of its config's ``speaker_id_map``,
listed in speaker-id order; the default is the config's ``default_speaker_id`` (else 0). A
single-speaker model has exactly one voice, whose id is the speaker name: the config's
``dataset`` when present, else the middle of the Piper file name ``<lang>_<REGION>-<name>-
<quality>`` (``en_US-joe-medium.onnx`` -> ``joe``), else the whole file stem. Ids are
matched exactly; ``voice=None`` means the default voice.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from vox_protocol import ModelInfo, Synthesize, Voice

from vox_runner.adapter import (
    Adapter,
    AdapterError,
    SynthChunk,
    iterate_in_thread,
    option_bool,
    with_last,
)
from vox_runner.adapters import ort, ort_cache

log = logging.getLogger("vox_runner.adapters.piper")

_PIPER_NAME = re.compile(r"^[a-z]{2,3}_[A-Z]{2}-(?P<name>.+)-(?:x_low|low|medium|high)$")


class PiperAdapter(Adapter):
    name: ClassVar[str] = "piper"
    kind: ClassVar[Literal["stt", "tts"]] = "tts"

    def __init__(self) -> None:
        self._voice: Any = None  # piper.PiperVoice
        self._speakers: dict[str, int] = {}  # voice id -> piper speaker id
        self._multi_speaker = False
        self._default_voice: str | None = None
        self._voices: list[Voice] = []
        self._length_scale = 1.0
        self._sample_rate = 0

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        from piper import PiperVoice

        model_path, config_path = _find_model(model_dir)
        config = json.loads(config_path.read_text(encoding="utf-8"))
        use_cuda = device.startswith("cuda")
        if use_cuda:  # piper's own CUDA provider settings
            voice = PiperVoice.load(model_path, config_path=config_path, use_cuda=True)
        else:
            voice = _cpu_voice(model_path, config)
        providers: list[str] = list(voice.session.get_providers())
        if use_cuda and "CUDAExecutionProvider" not in providers:
            log.warning("CUDA requested but onnxruntime gave %s", providers)

        language = _language(config)
        self._speakers, self._default_voice = voice_ids(model_path, config)
        self._multi_speaker = int(config.get("num_speakers", 1)) > 1
        self._voices = [Voice(id=vid, name=vid, language=language) for vid in self._speakers]
        self._voice = voice
        self._length_scale = float(voice.config.length_scale)
        self._sample_rate = int(voice.config.sample_rate)

        if option_bool(options, "warmup", True):
            _warm_up(voice)

        return ModelInfo(
            adapter=self.name,
            kind=self.kind,
            sample_rate=self._sample_rate,
            device="cuda" if "CUDAExecutionProvider" in providers else "cpu",
            providers=providers,
            languages=[language] if language else [],
            voices=list(self._voices),
            default_voice=self._default_voice,
        )

    def unload(self) -> None:
        self._voice = None
        self._speakers = {}
        self._voices = []
        self._default_voice = None

    async def voices(self) -> list[Voice]:
        return list(self._voices)

    def synthesize(self, request: Synthesize) -> AsyncIterator[SynthChunk]:
        # Validate on the event loop, before any thread work: bad requests fail fast.
        voice = self._voice
        if voice is None:
            raise AdapterError("not_loaded", "no piper voice is loaded")
        if not request.text.strip():
            raise AdapterError("bad_request", "text is empty")
        if not request.speed > 0:
            raise AdapterError("bad_request", f"speed must be positive, not {request.speed}")
        voice_id = request.voice or self._default_voice
        if voice_id not in self._speakers:
            available = ", ".join(self._speakers)
            raise AdapterError(
                "bad_request", f"unknown voice {request.voice!r}; available: {available}"
            )
        if request.language and not _language_matches(request.language, voice.config, self._voices):
            raise AdapterError(
                "bad_request",
                f"voice {voice_id!r} speaks {self._voices[0].language}, not {request.language!r}",
            )
        speaker_id = self._speakers[voice_id] if self._multi_speaker else None
        return iterate_in_thread(
            self._generate(voice, request.text, speaker_id, self._length_scale / request.speed)
        )

    def _generate(
        self, voice: Any, text: str, speaker_id: int | None, length_scale: float
    ) -> Iterator[SynthChunk]:
        """Blocking: one chunk per sentence piper makes, the text on the first.

        The control plane sends one sentence per request (vox_control.text.sentences); piper
        may still cut it further where espeak-ng sees a sentence end.
        """
        from piper import SynthesisConfig

        syn_config = SynthesisConfig(speaker_id=speaker_id, length_scale=length_scale)
        label = text.strip()
        for chunk, last in with_last(voice.synthesize(text, syn_config=syn_config)):
            yield SynthChunk(
                audio=chunk.audio_int16_bytes,
                sample_rate=chunk.sample_rate,
                text=label,
                last=last,
            )
            label = ""  # piper split the text further: the text went with the first


def _warm_up(voice: Any) -> None:
    """Run the model once: the first ONNX run is several times slower than later ones, and
    the first request's time to first audio should not pay for it."""
    from piper import SynthesisConfig
    from piper.config import PhonemeType
    from piper.phoneme_ids import phonemes_to_ids

    try:
        if voice.config.phoneme_type == PhonemeType.ESPEAK:
            voice.phonemize("Hello.")  # also loads espeak-ng's data
        # Phonemes straight from the id map: no phonemizer that might need to download.
        id_map = voice.config.phoneme_id_map
        phonemes = [p for p in id_map if p not in ("_", "^", "$")][:8]
        voice.phoneme_ids_to_audio(phonemes_to_ids(phonemes, id_map), SynthesisConfig())
    except Exception:
        log.warning("piper warm-up failed; the first request will be slower", exc_info=True)


def _cpu_voice(model_path: Path, config: dict[str, Any]) -> Any:
    """PiperVoice.load's CPU voice, with Vox's session options (no memory pattern)."""
    from piper import PiperVoice
    from piper.config import PiperConfig

    session = ort_cache.session(model_path, ort.session_options(), [ort.CPU])
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


def _find_model(model_dir: Path) -> tuple[Path, Path]:
    models = sorted(model_dir.glob("*.onnx"))
    if len(models) != 1:
        found = ", ".join(m.name for m in models) or "none"
        raise AdapterError("load_failed", f"expected one *.onnx in {model_dir}, found {found}")
    config = models[0].with_name(models[0].name + ".json")
    if not config.is_file():
        configs = sorted(model_dir.glob("*.onnx.json"))
        if len(configs) != 1:
            raise AdapterError("load_failed", f"no {config.name} in {model_dir}")
        config = configs[0]
    return models[0], config


def voice_ids(model_path: Path, config: Mapping[str, Any]) -> tuple[dict[str, int], str]:
    """Voice id -> piper speaker id, in speaker order, and the default voice id."""
    speakers = int(config.get("num_speakers", 1))
    if speakers <= 1:
        only = _single_voice_id(model_path, config)
        return {only: 0}, only
    named = {str(k): int(v) for k, v in (config.get("speaker_id_map") or {}).items()}
    # Unnamed speakers: their numbers are their ids.
    table = (
        dict(sorted(named.items(), key=lambda item: item[1]))
        if named
        else {str(sid): sid for sid in range(speakers)}
    )
    default_sid = int(config.get("default_speaker_id", 0))
    default = next((vid for vid, sid in table.items() if sid == default_sid), next(iter(table)))
    return table, default


def _single_voice_id(model_path: Path, config: Mapping[str, Any]) -> str:
    dataset = config.get("dataset")
    if isinstance(dataset, str) and dataset.strip():
        return dataset.strip()
    stem = model_path.name.removesuffix(".onnx")
    match = _PIPER_NAME.match(stem)
    return match.group("name") if match else stem


def _language(config: Mapping[str, Any]) -> str:
    """BCP 47-style tag from the config ("en_US" -> "en-US"), else the espeak voice."""
    language, espeak = config.get("language"), config.get("espeak")
    code = language.get("code") if isinstance(language, dict) else language
    if not code and isinstance(espeak, dict):
        code = espeak.get("voice")
    return str(code).replace("_", "-") if code else ""


def _language_matches(requested: str, piper_config: Any, voices: list[Voice]) -> bool:
    # Lenient on purpose: "en", "en-US" and "en-GB" all select an en_US voice; only a
    # different language ("de" for an English voice) is refused.
    def primary(tag: str) -> str:
        return tag.strip().lower().replace("_", "-").split("-")[0]

    have = {primary(v.language) for v in voices if v.language}
    have.add(primary(str(piper_config.espeak_voice)))
    return primary(requested) in have

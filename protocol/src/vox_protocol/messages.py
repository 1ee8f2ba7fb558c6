"""Protocol messages: one tagged-Struct union per direction; new fields always get defaults."""

from __future__ import annotations

from typing import Literal

import msgspec

# Bumped on any change an older peer could not decode or would misread. Adding a field
# with a default is not such a change.
PROTOCOL_VERSION = 1

ErrorCode = Literal[
    "bad_request",  # the request itself is invalid (empty text, unknown voice, bad audio)
    "not_loaded",  # inference asked of a runner with no model loaded
    "load_failed",  # the adapter could not load the model
    "inference_failed",  # the adapter raised during inference
    "unsupported",  # the adapter cannot do this (e.g. synthesize on an STT model)
    "cancelled",  # the request was cancelled by the control plane
    "protocol",  # a frame could not be decoded or came out of order
    "version_mismatch",  # handshake: the peers speak different protocol versions
    "internal",  # anything else
]


class _Msg(msgspec.Struct, tag_field="type", forbid_unknown_fields=False, omit_defaults=True):
    """Base of every message: tagged by class name under ``type``."""


# ---------------------------------------------------------------- shared value types


class Word(msgspec.Struct, omit_defaults=True):
    start: float
    end: float
    word: str
    probability: float = 1.0


class Segment(msgspec.Struct, omit_defaults=True):
    start: float
    end: float
    text: str
    words: list[Word] = []
    avg_logprob: float | None = None
    no_speech_prob: float | None = None


class Voice(msgspec.Struct, omit_defaults=True):
    id: str
    name: str = ""
    language: str = ""
    gender: str = ""


class ModelInfo(msgspec.Struct, omit_defaults=True):
    """What a runner reports about the model it has loaded."""

    adapter: str
    kind: Literal["stt", "tts", "vad"]
    sample_rate: int
    device: str = "cpu"
    # The execution providers or compute device the runner really got, e.g.
    # ["CUDAExecutionProvider", "CPUExecutionProvider"] or ["ctranslate2:cpu:int8"].
    providers: list[str] = []
    languages: list[str] = []
    voices: list[Voice] = []
    default_voice: str | None = None


# ---------------------------------------------------------------- control -> runner


class Hello(_Msg, tag="hello"):
    """First frame from the control plane: the protocol version it speaks."""

    protocol_version: int
    control_version: str = ""
    # Send a Heartbeat at least this often (seconds) while a request is in flight, so a
    # silent runner can be told from a busy one; 0 (an older control plane): never.
    heartbeat_s: float = 0.0


class Load(_Msg, tag="load"):
    id: int
    model_dir: str
    device: str = "cpu"
    options: dict[str, str | int | float | bool | None] = {}


class Unload(_Msg, tag="unload"):
    id: int


class Transcribe(_Msg, tag="transcribe"):
    """Transcribe mono float32 little-endian PCM at ``sample_rate`` (raw bytes, no container)."""

    id: int
    audio: bytes
    sample_rate: int = 16000
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    prompt: str | None = None
    temperature: float | None = None
    word_timestamps: bool = False
    vad_filter: bool = False
    beam_size: int | None = None


class Synthesize(_Msg, tag="synthesize"):
    """Speak ``text`` (one sentence, as the control plane sends it).

    ``stream`` names the client stream the sentence belongs to (empty: a stream of its own):
    the runner ranks a stream's first sentence, and a stream about to run out of audio, before
    the later sentences of others (vox_runner.gate).
    """

    id: int
    text: str
    voice: str | None = None
    speed: float = 1.0
    language: str | None = None
    stream: str = ""


class DetectSpeech(_Msg, tag="detect_speech"):
    """Speech probabilities for the next piece of one stream's mono float32 PCM.

    A VAD is stateful (Silero keeps LSTM state and the last samples as context): the runner
    keeps that state per ``stream`` and carries samples short of a frame to the next call.
    ``reset`` starts the stream afresh; ``end`` drops its state (no audio needed).
    """

    id: int
    audio: bytes
    sample_rate: int = 16000
    stream: str = ""
    reset: bool = False
    end: bool = False


class ListVoices(_Msg, tag="list_voices"):
    id: int


class Cancel(_Msg, tag="cancel"):
    """Cancel the in-flight request ``id``; the runner answers with Error(code='cancelled')."""

    id: int


class Shutdown(_Msg, tag="shutdown"):
    """Unload and exit cleanly."""


ControlMessage = (
    Hello | Load | Unload | Transcribe | Synthesize | DetectSpeech | ListVoices | Cancel | Shutdown
)


# ---------------------------------------------------------------- runner -> control


class Welcome(_Msg, tag="welcome"):
    """Handshake reply: the runner speaks ``protocol_version`` and hosts ``adapter``."""

    protocol_version: int
    runner_version: str
    adapter: str
    pid: int
    # The heartbeat interval this runner keeps; 0 (an older runner): it sends none.
    heartbeat_s: float = 0.0


class Heartbeat(_Msg, tag="heartbeat"):
    """Sent only to a control plane that asked for it (Hello.heartbeat_s): "alive, still busy"."""

    in_flight: int = 0


class Loaded(_Msg, tag="loaded"):
    id: int
    info: ModelInfo
    load_seconds: float = 0.0


class Transcript(_Msg, tag="transcript"):
    id: int
    text: str
    language: str | None = None
    language_probability: float | None = None
    duration: float = 0.0
    segments: list[Segment] = []


class AudioChunk(_Msg, tag="audio"):
    """One piece of synthesized speech: mono int16 little-endian PCM (raw bytes)."""

    id: int
    seq: int
    audio: bytes
    sample_rate: int
    text: str = ""  # the sentence this chunk speaks, when known


class SynthesisDone(_Msg, tag="synthesis_done"):
    id: int
    chunks: int
    samples: int
    sample_rate: int


class SpeechProbabilities(_Msg, tag="speech_probabilities"):
    """One probability of speech per whole frame of ``frame_samples`` the stream completed."""

    id: int
    probabilities: list[float]
    frame_samples: int = 512
    sample_rate: int = 16000


class Voices(_Msg, tag="voices"):
    id: int
    voices: list[Voice]
    default: str | None = None


class Error(_Msg, tag="error"):
    """A request failed; ``id`` 0 means the failure is not tied to a request."""

    id: int
    code: ErrorCode
    message: str


RunnerMessage = (
    Welcome
    | Loaded
    | Transcript
    | AudioChunk
    | SynthesisDone
    | SpeechProbabilities
    | Voices
    | Error
    | Heartbeat
)

"""The OpenAI and native audio routes over a fake runner: parameters, formats, SSE, errors."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from litestar.testing import TestClient
from vox_control.app import create_app
from vox_control.errors import ModelNotFound, VoxError
from vox_control.runner_client import RunnerRequestError
from vox_control.services import Services
from vox_control.settings import Settings
from vox_protocol import (
    AudioChunk,
    ListVoices,
    ModelInfo,
    Segment,
    Synthesize,
    Transcribe,
    Transcript,
    Voice,
    Voices,
    Word,
)

from tests.openai.media import decode, encode_container, tone

STT, TTS = "whisper:tiny.en", "piper:en-us-joe-medium"
RATE = 22050


class Overloaded(VoxError):
    status = 429
    type = "rate_limit_error"


class FakeRunner:
    """RunnerClient's typed methods; each records the message the real client would send."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self._id = 0

    def _next_id(self) -> int:
        self._id += 1
        return self._id

    async def voices(self) -> Voices:
        self.sent.append(ListVoices(id=self._next_id()))
        return Voices(id=self._id, voices=[Voice(id="joe", language="en-US")], default="joe")

    async def transcribe(self, audio: bytes, sample_rate: int, **options: Any) -> Transcript:
        message = Transcribe(id=self._next_id(), audio=audio, sample_rate=sample_rate, **options)
        self.sent.append(message)
        words = [Word(0.1, 0.5, " Hello"), Word(0.6, 1.0, " world.")]
        return Transcript(
            id=message.id,
            text="Hello world. Second one.",
            language="en",
            duration=len(message.audio) / 4 / message.sample_rate,
            segments=[
                Segment(0.0, 1.0, " Hello world.", words=words),
                Segment(1.0, 1.9, " Second one.", words=[Word(1.1, 1.8, " Second one.")]),
            ],
        )

    async def synthesize(self, text: str, **options: Any) -> AsyncIterator[AudioChunk]:
        message = Synthesize(id=self._next_id(), text=text, **options)
        self.sent.append(message)
        if message.voice == "nobody":
            raise RunnerRequestError("bad_request", "unknown voice 'nobody'; available: joe")
        for seq, _ in enumerate(message.text.split(".")[:-1] or [message.text]):
            yield AudioChunk(
                id=message.id, seq=seq, audio=tone(0.5, RATE).tobytes(), sample_rate=RATE
            )


class FakeScheduler:
    def __init__(self) -> None:
        self.runner = FakeRunner()
        self.error: Exception | None = None
        self.uses: list[str] = []

    @contextlib.asynccontextmanager
    async def use(self, name: str, keep_alive: float | None = None) -> AsyncIterator[Any]:
        if self.error is not None:
            raise self.error
        self.uses.append(name)
        rate = 16000 if name == STT else RATE
        kind = "stt" if name == STT else "tts"
        voices = [] if name == STT else [Voice(id="joe", language="en-US")]
        info = ModelInfo(adapter="fake", kind=kind, sample_rate=rate, device="cpu", voices=voices)
        yield SimpleNamespace(runner=self.runner, info=info)

    def loaded(self) -> list[Any]:
        return []

    async def stop(self) -> None:
        pass


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient[Any], FakeScheduler]]:
    settings = Settings(home=tmp_path, pull_defaults=False, max_upload_bytes=2_000_000)
    services = Services(settings)
    installed = {STT, TTS}

    def manifest(name: str, kind: str | None = None) -> Any:
        if name not in installed:
            raise ModelNotFound(f"model '{name}' is not pulled")
        entry = services.registry.get(name)
        if kind is not None and entry.type != kind:
            from vox_control.errors import BadRequest

            raise BadRequest(f"model '{name}' is the wrong kind", param="model")
        return SimpleNamespace(name=name, type=entry.type, entry=entry)

    scheduler = FakeScheduler()
    services.manifest = manifest  # type: ignore[method-assign]
    services.scheduler = scheduler  # type: ignore[assignment]
    with TestClient(create_app(settings, services)) as client:
        yield client, scheduler


WAV = encode_container(tone(2.0, RATE), RATE, "wav")


def _transcribe(
    client: TestClient[Any], path: str = "/v1/audio/transcriptions", **data: Any
) -> Any:
    return client.post(path, files={"file": ("a.wav", WAV, "audio/wav")}, data=data)


def test_transcription_formats(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, _ = env
    assert _transcribe(client, model="whisper-1").json() == {"text": "Hello world. Second one."}
    text = _transcribe(client, response_format="text")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == "Hello world. Second one.\n"
    srt = _transcribe(client, response_format="srt").text
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,000\nHello world.\n\n2\n")
    vtt = _transcribe(client, response_format="vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nHello world.")
    verbose = _transcribe(client, response_format="verbose_json").json()
    assert verbose["task"] == "transcribe"
    assert verbose["language"] == "english"
    assert len(verbose["segments"]) == 2
    assert "words" not in verbose
    assert verbose["duration"] == pytest.approx(2.0, abs=0.01)


def test_options_reach_the_runner(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, scheduler = env
    response = client.post(
        "/v1/audio/transcriptions",
        files=[
            ("file", ("a.wav", WAV, "audio/wav")),
            ("model", (None, "whisper-1")),
            ("prompt", (None, "Kwame, Siobhan.")),
            ("language", (None, "en")),
            ("temperature", (None, "0.2")),
            ("response_format", (None, "verbose_json")),
            ("timestamp_granularities[]", (None, "word")),
            ("timestamp_granularities[]", (None, "segment")),
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [w["word"] for w in body["words"]] == ["Hello", "world.", "Second one."]
    assert len(body["segments"]) == 2
    sent = scheduler.runner.sent[-1]
    assert isinstance(sent, Transcribe)
    assert (sent.prompt, sent.language, sent.temperature) == ("Kwame, Siobhan.", "en", 0.2)
    assert sent.word_timestamps
    assert sent.task == "transcribe"
    assert sent.sample_rate == 16000
    assert len(sent.audio) / 4 / 16000 == pytest.approx(2.0, abs=0.01)  # decoded once, 16 kHz
    words_only = _transcribe(
        client, response_format="verbose_json", **{"timestamp_granularities[]": "word"}
    ).json()
    assert "words" in words_only
    assert "segments" not in words_only


def test_translation_uses_the_translate_task(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, scheduler = env
    body = _transcribe(client, "/v1/audio/translations", response_format="verbose_json").json()
    assert body["task"] == "translate"
    assert scheduler.runner.sent[-1].task == "translate"


def test_streaming_transcription_events(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, _ = env
    response = _transcribe(client, stream="true")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line]
    assert [e["type"] for e in events] == [
        "transcript.text.delta",
        "transcript.text.delta",
        "transcript.text.done",
    ]
    assert "".join(e["delta"] for e in events[:-1]).strip() == events[-1]["text"]


def test_native_transcribe_shares_the_options(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, scheduler = env
    native = _transcribe(client, "/api/transcribe", word_timestamps="true", beam_size="3").json()
    assert native["model"] == STT
    assert native["segments"][0]["words"]
    assert scheduler.runner.sent[-1].beam_size == 3
    srt = _transcribe(client, "/api/transcribe", response_format="srt")
    assert srt.text.startswith("1\n")


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_speech_formats(env: tuple[TestClient[Any], FakeScheduler], fmt: str) -> None:
    client, _ = env
    body = {"model": "tts-1", "input": "One. Two. Three.", "voice": "alloy"}
    response = client.post("/v1/audio/speech", json={**body, "response_format": fmt})
    assert response.status_code == 200, response.text
    decoded = decode(response.content)
    assert decoded.rate == int(response.headers["x-sample-rate"])
    assert response.headers["x-model-sample-rate"] == str(RATE)
    assert decoded.channels == 1
    assert decoded.duration == pytest.approx(1.5, abs=0.08)


def test_speech_defaults_and_extensions(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, scheduler = env
    default = client.post("/v1/audio/speech", json={"input": "Hi.", "voice": "alloy"})
    assert default.headers["content-type"] == "audio/mpeg"  # OpenAI's default
    pcm = client.post(
        "/v1/audio/speech", json={"input": "Hi.", "response_format": "pcm", "instructions": "calm"}
    )
    assert pcm.headers["x-sample-rate"] == "24000"
    assert len(pcm.content) / 2 / 24000 == pytest.approx(0.5, abs=0.01)
    native = client.post(
        "/api/synthesize", json={"text": "Hi.", "speed": 2.0, "sample_rate": 16000}
    )
    assert native.headers["content-type"] == "audio/wav"
    assert decode(native.content).rate == 16000
    sent = scheduler.runner.sent[-1]
    assert isinstance(sent, Synthesize)
    assert sent.speed == 2.0
    assert sent.voice is None


def test_speech_sends_one_runner_request_per_sentence(
    env: tuple[TestClient[Any], FakeScheduler],
) -> None:
    client, scheduler = env
    text = "Dr. Smith met Mr. Jones at 5 p.m. on Friday. Pi is 3.14! Is it?"
    response = client.post("/v1/audio/speech", json={"input": text, "response_format": "pcm"})
    assert response.status_code == 200, response.text
    spoken = [m.text for m in scheduler.runner.sent if isinstance(m, Synthesize)]
    assert spoken == ["Dr. Smith met Mr. Jones at 5 p.m. on Friday.", "Pi is 3.14!", "Is it?"]
    assert scheduler.uses == [TTS]  # the model is held once for the whole request


def test_speech_sse(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, _ = env
    body = {"input": "One. Two.", "response_format": "wav", "stream_format": "sse"}
    response = client.post("/v1/audio/speech", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line]
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["input_tokens"] == 9
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    assert decode(audio).duration == pytest.approx(1.0, abs=0.01)


def test_voices(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, scheduler = env
    piper = client.get("/api/voices", params={"model": TTS}).json()
    assert piper["voices"][0]["id"] == "joe"
    assert piper["openai_voices"]["alloy"] == "joe"
    # kokoro is not even pulled: its catalog lists the voices, so no runner starts.
    uses = len(scheduler.uses)
    kokoro = client.get("/api/voices", params={"model": "kokoro:v1.0"}).json()
    assert kokoro["default"] == "af_heart"
    assert kokoro["openai_voices"]["alloy"] == "af_alloy"
    assert len(scheduler.uses) == uses


BAD_TRANSCRIPTIONS = [
    ({"response_format": "xml"}, 400, "response_format"),
    (
        {"response_format": "srt", "timestamp_granularities[]": "word"},
        400,
        "timestamp_granularities",
    ),
    (
        {"response_format": "verbose_json", "timestamp_granularities[]": "char"},
        400,
        "timestamp_granularities",
    ),
    ({"response_format": "srt", "stream": "true"}, 400, "stream"),
    ({"stream": "maybe"}, 400, "stream"),
    ({"temperature": "hot"}, 400, "temperature"),
    ({"temperature": "3"}, 400, "temperature"),
    ({"model": "Whisper Large"}, 400, "model"),
    ({"model": "whisper:nope"}, 404, "model"),
    ({"model": "whisper:large-v3"}, 404, "model"),  # known, not pulled
    ({"model": TTS}, 400, "model"),
]


@pytest.mark.parametrize(("data", "status", "param"), BAD_TRANSCRIPTIONS)
def test_bad_transcription_requests(
    env: tuple[TestClient[Any], FakeScheduler], data: dict[str, str], status: int, param: str
) -> None:
    client, _ = env
    response = _transcribe(client, **data)
    _assert_envelope(response, status, param)


@pytest.mark.parametrize(
    ("file", "status"),
    [(b"", 400), (b"not audio" * 50, 400), (None, 400), (bytes(2_100_000), 413)],
)
def test_bad_uploads(
    env: tuple[TestClient[Any], FakeScheduler], file: bytes | None, status: int
) -> None:
    client, _ = env
    # Without a file the body is still multipart (the model field alone).
    files = {"file": ("a.wav", file, "audio/wav")} if file is not None else {"x": (None, "1")}
    response = client.post("/v1/audio/transcriptions", files=files, data={"model": "whisper-1"})
    _assert_envelope(response, status, "file" if status == 400 else None)


BAD_SPEECH = [
    ({"input": ""}, 400, "input"),
    ({"input": "   "}, 400, "input"),
    ({}, 400, "input"),
    ({"input": "Hi.", "speed": 4.5}, 400, "speed"),
    ({"input": "Hi.", "speed": 0.1}, 400, "speed"),
    ({"input": "Hi.", "speed": "fast"}, 400, None),
    ({"input": "Hi.", "response_format": "ogg"}, 400, "response_format"),
    ({"input": "Hi.", "stream_format": "chunks"}, 400, "stream_format"),
    ({"input": "Hi.", "response_format": "opus", "sample_rate": 44100}, 422, "sample_rate"),
    ({"input": "Hi.", "sample_rate": 5}, 400, "sample_rate"),
    # The catalog entry lists no voices: the loaded runner's list makes it a 400 on `voice`.
    ({"input": "Hi.", "voice": "nobody"}, 400, "voice"),
    ({"input": "Hi.", "model": STT}, 400, "model"),
    ({"input": "Hi.", "model": "kokoro:v1.0"}, 404, "model"),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD_SPEECH)
def test_bad_speech_requests(
    env: tuple[TestClient[Any], FakeScheduler], body: dict[str, Any], status: int, param: str
) -> None:
    client, _ = env
    _assert_envelope(client.post("/v1/audio/speech", json=body), status, param)
    _assert_envelope(client.post("/api/synthesize", json=body), status, param)


def test_malformed_json_body(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, _ = env
    response = client.post(
        "/v1/audio/speech", content=b"{nope", headers={"content-type": "application/json"}
    )
    _assert_envelope(response, 400, None)


def test_scheduler_errors_keep_status_and_headers(
    env: tuple[TestClient[Any], FakeScheduler],
) -> None:
    client, scheduler = env
    scheduler.error = Overloaded("too many requests queued", headers={"Retry-After": "3"})
    response = client.post("/v1/audio/speech", json={"input": "Hi."})
    _assert_envelope(response, 429, None)
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["type"] == "rate_limit_error"
    response = _transcribe(client)
    _assert_envelope(response, 429, None)
    assert response.headers["retry-after"] == "3"


def test_models_and_aliases(env: tuple[TestClient[Any], FakeScheduler]) -> None:
    client, _ = env
    alias = client.get("/v1/models/whisper-1").json()
    assert alias["alias_of"] == STT
    assert alias["object"] == "model"
    _assert_envelope(client.get("/v1/models/whisper:nope"), 404, "model")


def _assert_envelope(response: Any, status: int, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error

"""End to end with the official openai SDK: every format, granularity, stream and error."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import soundfile
import srt
import webvtt

from tests.conftest import VoxServer, wer
from tests.openai.media import CONTAINERS, decode, encode_container

pytestmark = pytest.mark.e2e

TEXT = (
    "Hello Kwame. The meeting with Siobhan and Nguyen starts at noon. Bring the Vox runtime notes."
)
# Four of TEXT's sixteen words are names the model cannot spell without a prompt (the prompt
# test relies on that), and each can cost it a word or two: the plain transcripts are held to
# a bound that still fails on any real loss of the sentence.
PLAIN_WER = 0.5
LONG = " ".join(
    f"This is sentence number {n} of a long text that is read aloud by the server."
    for n in range(1, 13)
)


@pytest.fixture(scope="module")
def client(pulled: VoxServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{pulled.url}/v1", api_key="unused", timeout=300)


@pytest.fixture(scope="module")
def speech_wav(client: openai.OpenAI) -> bytes:
    return client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="wav"
    ).content


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PLAIN = (
    "The quick brown fox jumps over the lazy dog. "
    "This server turns text into speech and speech back into text on your own machine."
)


def _file(data: bytes, name: str = "speech.wav") -> tuple[str, bytes]:
    return (name, data)


def test_transcription_formats(client: openai.OpenAI, speech_wav: bytes) -> None:
    duration = decode(speech_wav).duration
    as_json = client.audio.transcriptions.create(model="whisper-1", file=_file(speech_wav))
    assert wer(TEXT, as_json.text) <= PLAIN_WER, as_json.text
    text = client.audio.transcriptions.create(
        model="whisper-1", file=_file(speech_wav), response_format="text"
    )
    assert isinstance(text, str)
    assert text.strip() == as_json.text

    subtitles = client.audio.transcriptions.create(
        model="whisper-1", file=_file(speech_wav), response_format="srt"
    )
    cues = list(srt.parse(str(subtitles)))
    assert cues
    assert " ".join(c.content for c in cues) == as_json.text
    assert all(c.start < c.end for c in cues)
    assert cues[-1].end.total_seconds() <= duration + 0.05

    vtt = client.audio.transcriptions.create(
        model="whisper-1", file=_file(speech_wav), response_format="vtt"
    )
    captions = webvtt.from_buffer(io.StringIO(str(vtt))).captions
    assert [c.text for c in captions] == [c.content for c in cues]

    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=_file(speech_wav),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.text == as_json.text
    assert verbose.duration == pytest.approx(duration, abs=0.05)
    assert verbose.segments
    assert verbose.words
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts)  # monotonic
    assert all(0 <= w.start <= w.end <= duration + 0.05 for w in verbose.words)
    assert [s.id for s in verbose.segments] == list(range(len(verbose.segments)))


def test_prompt_and_language(client: openai.OpenAI, speech_wav: bytes) -> None:
    plain = client.audio.transcriptions.create(
        model="whisper-1", file=_file(speech_wav), language="en"
    ).text
    prompted = client.audio.transcriptions.create(
        model="whisper-1",
        file=_file(speech_wav),
        language="en",
        prompt="Kwame, Siobhan, Nguyen, Vox runtime.",
    ).text
    # The prompt spells the names the model could not know: it reached the model.
    assert "Siobhan" in prompted, prompted
    assert "Kwame" in prompted, prompted
    assert prompted != plain


def test_streaming_transcription(client: openai.OpenAI, speech_wav: bytes) -> None:
    events = list(
        client.audio.transcriptions.create(model="whisper-1", file=_file(speech_wav), stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done"
    assert set(kinds[:-1]) == {"transcript.text.delta"}
    deltas = "".join(e.delta for e in events[:-1])  # type: ignore[union-attr]
    assert deltas.strip() == events[-1].text  # type: ignore[union-attr]


def test_translation(client: openai.OpenAI, speech_wav: bytes) -> None:
    translated = client.audio.translations.create(model="whisper-1", file=_file(speech_wav))
    assert wer(TEXT, translated.text) <= PLAIN_WER
    verbose = client.audio.translations.create(
        model="whisper-1", file=_file(speech_wav), response_format="verbose_json"
    )
    assert verbose.segments
    subtitles = client.audio.translations.create(
        model="whisper-1", file=_file(speech_wav), response_format="srt"
    )
    assert list(srt.parse(str(subtitles)))


def test_every_input_container_transcribes_the_same(client: openai.OpenAI) -> None:
    # A committed take, not a fresh one: a new piper take encoded six lossy ways now and then
    # lets whisper drop its last phrase in one of them (CI saw "... speech and" for one
    # container), which says nothing about decoding.
    samples, rate = soundfile.read(FIXTURES / "plain-fox.flac", dtype="int16")
    pcm16 = np.asarray(samples, dtype=np.int16)
    for kind in sorted(CONTAINERS):
        data = encode_container(pcm16, rate, kind)
        text = client.audio.transcriptions.create(
            model="whisper-1", file=_file(data, f"speech.{kind}")
        ).text
        assert wer(PLAIN, text) <= 0.1, (kind, text)


def test_speech_in_every_format(pulled: VoxServer) -> None:
    """One synthesis (piper is stochastic) encoded six ways, each decoded back."""
    with pulled.client() as http:
        wav = http.post("/api/synthesize", json={"input": TEXT, "response_format": "wav"}).content
    reference = decode(wav)
    pcm = (reference.samples * 32767).astype(np.int16).tobytes()
    from vox_control.audio.encode import SPEECH_FORMATS, encode_all, output_rate

    for fmt in SPEECH_FORMATS:
        data = encode_all(pcm, reference.rate, fmt)
        if fmt == "pcm":
            duration = len(data) / 2 / 24000
        else:
            got = decode(data)
            assert got.channels == 1
            assert got.rate == output_rate(fmt, reference.rate, None)
            duration = got.duration
        # aac and mp3 add encoder padding (tens of ms); 5% covers it.
        assert duration == pytest.approx(reference.duration, rel=0.05), fmt


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_sdk_speech_formats(client: openai.OpenAI, fmt: Any) -> None:
    response = client.audio.speech.create(
        model="tts-1", voice="nova", input=TEXT, response_format=fmt, speed=1.25
    )
    data = response.content
    rate = int(response.response.headers["x-sample-rate"])
    if fmt == "pcm":
        assert rate == 24000
        duration = len(data) / 2 / rate
    else:
        got = decode(data)
        assert (got.rate, got.channels) == (rate, 1)
        duration = got.duration
    # ~17 words at 1.25x: a few seconds, whatever the format.
    assert 2.0 < duration < 8.0, (fmt, duration)


def test_streamed_speech_starts_before_the_text_is_done(client: openai.OpenAI) -> None:
    started = time.perf_counter()
    first_at = None
    data = b""
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=LONG, response_format="mp3"
    ) as response:
        for chunk in response.iter_bytes(1024):
            if first_at is None:
                first_at = time.perf_counter() - started
            data += chunk
    total = time.perf_counter() - started
    assert first_at is not None
    # Twelve sentences: the first one's audio arrives long before the last is synthesized.
    assert first_at < total / 3, (first_at, total)
    assert decode(data).duration > 30


def test_sse_speech(client: openai.OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format="pcm",
        stream_format="sse",
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line]
    assert events[-1]["type"] == "speech.audio.done"
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert 2.0 < len(pcm) / 2 / 24000 < 10.0


def test_models_and_voices(client: openai.OpenAI, pulled: VoxServer) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"whisper:tiny.en", "piper:en-us-joe-medium", "whisper-1", "tts-1"} <= ids
    assert client.models.retrieve("tts-1").id == "tts-1"
    with pulled.client() as http:
        voices = http.get("/api/voices", params={"model": "piper:en-us-joe-medium"}).json()
    assert voices["default"] == "joe"
    assert voices["openai_voices"]["alloy"] == "joe"


def test_errors_reach_the_sdk(client: openai.OpenAI, speech_wav: bytes) -> None:
    cases: list[tuple[type[openai.APIStatusError], Any]] = [
        (openai.NotFoundError, lambda: client.models.retrieve("whisper:nope")),
        (
            openai.NotFoundError,
            lambda: client.audio.transcriptions.create(
                model="whisper:large-v3", file=_file(speech_wav)
            ),
        ),
        (
            openai.BadRequestError,
            lambda: client.audio.transcriptions.create(
                model="whisper-1", file=_file(b"this is text, not audio" * 20)
            ),
        ),
        (
            openai.BadRequestError,
            lambda: client.audio.transcriptions.create(
                model="whisper-1", file=_file(speech_wav), language="de"
            ),
        ),
        (
            openai.BadRequestError,
            lambda: client.audio.speech.create(model="tts-1", voice="alloy", input=""),
        ),
        (
            openai.BadRequestError,
            lambda: client.audio.speech.create(
                model="tts-1", voice="nobody-at-all", input="Hello."
            ),
        ),
        (
            openai.BadRequestError,
            lambda: client.audio.speech.create(
                model="tts-1", voice="alloy", input="Hello.", speed=9
            ),
        ),
        (
            openai.UnprocessableEntityError,
            lambda: client.audio.speech.create(
                model="tts-1",
                voice="alloy",
                input="Hello.",
                response_format="opus",
                extra_body={"sample_rate": 44100},
            ),
        ),
    ]
    for error, call in cases:
        with pytest.raises(error) as info:
            call()
        body = info.value.body
        assert isinstance(body, dict)
        assert set(body) >= {"message", "type", "param", "code"}, body


def test_upload_over_the_limit_is_413(pulled: VoxServer, tmp_path: Any) -> None:
    small = VoxServer(
        pulled.home,
        tmp_path / "small.log",
        env={"VOX_MAX_UPLOAD_BYTES": "100000", "VOX_PULL_DEFAULTS": "false"},
    )
    small.start()
    try:
        sdk = openai.OpenAI(base_url=f"{small.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            sdk.audio.transcriptions.create(model="whisper-1", file=_file(bytes(300_000)))
        assert info.value.status_code == 413
        assert isinstance(info.value.body, dict)
        assert "message" in info.value.body
    finally:
        small.stop()

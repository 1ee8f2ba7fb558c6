"""End to end with the official openai SDK's realtime client: VAD turns, manual commits,
malformed events, floods and a disconnect mid-turn, against a real `vox serve`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
import wave
from typing import Any

import numpy as np
import openai
import pytest
import websockets

from tests.conftest import VoxServer, wer
from tests.openai.media import decode

pytestmark = pytest.mark.e2e

RATE = 24000  # OpenAI's pcm16
FIRST = "The weather today is sunny with a light breeze from the west."
SECOND = "Please remember to bring the blue folder to the meeting tomorrow."
CHUNK = RATE // 10  # 100 ms appends
REFERENCE = f"{FIRST} {SECOND}"
# One word more than the HTTP transcript of the same take. Each VAD turn is decoded on its own,
# without the other sentence around it, and Whisper then heard "sunny with the light breeze"
# in 5 of 80 fresh takes (once in CI) where the whole take gave "a light breeze"; none
# differed by more than one word.
ONE_WORD = 1 / len(REFERENCE.split())


def _no_worse(hypothesis: str, http: str) -> bool:
    """At most one word error more than the HTTP path's transcript of the same take."""
    return wer(REFERENCE, hypothesis) <= wer(REFERENCE, http) + ONE_WORD + 1e-9


def _pcm24(client: openai.OpenAI, text: str) -> np.ndarray:
    wav = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="wav"
    )
    audio = decode(wav.content)
    from soxr import resample

    return np.asarray(resample(audio.samples, audio.rate, RATE), dtype=np.float32)


def _int16(pcm: np.ndarray) -> bytes:
    return (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()


def _wav(pcm: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(_int16(pcm))
    return out.getvalue()


@pytest.fixture(scope="module")
def recording(rt_server: VoxServer) -> dict[str, Any]:
    """Two utterances, 1.5 s of silence between them (and around), and its HTTP transcript."""
    client = openai.OpenAI(base_url=f"{rt_server.url}/v1", api_key="unused", timeout=300)
    silence = np.zeros(int(RATE * 1.5), np.float32)
    pcm = np.concatenate(
        [silence[: RATE // 2], _pcm24(client, FIRST), silence, _pcm24(client, SECOND), silence]
    )
    http = client.audio.transcriptions.create(model="whisper-1", file=("two.wav", _wav(pcm)))
    return {"pcm": _int16(pcm), "http": http.text}


def _aclient(server: VoxServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused")


def _connect(server: VoxServer) -> Any:
    return _aclient(server).realtime.connect(extra_query={"intent": "transcription"})


async def _stream(connection: Any, pcm: bytes, pace: float) -> None:
    """Append 100 ms pieces at ``pace`` times real time."""
    step = CHUNK * 2
    for start in range(0, len(pcm), step):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(pcm[start : start + step]).decode()
        )
        await asyncio.sleep(0.1 / pace)


async def _until(connection: Any, kind: str, seen: list[Any], limit: float = 120) -> Any:
    async with asyncio.timeout(limit):
        async for event in connection:
            seen.append(event)
            if event.type == kind:
                return event
    raise AssertionError(f"no {kind}: {[e.type for e in seen]}")


def test_server_vad_two_turns(rt_server: VoxServer, recording: dict[str, Any]) -> None:
    async def run() -> list[Any]:
        async with _connect(rt_server) as connection:
            seen: list[Any] = []
            created = await _until(connection, "session.created", seen)
            assert created.session.type == "transcription"
            await connection.session.update(
                session={
                    "type": "transcription",
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcm", "rate": RATE},
                            "transcription": {"model": "whisper-1", "language": "en"},
                            "turn_detection": {
                                "type": "server_vad",
                                "threshold": 0.5,
                                "prefix_padding_ms": 300,
                                "silence_duration_ms": 500,
                            },
                        }
                    },
                }
            )
            await _until(connection, "session.updated", seen)
            sender = asyncio.create_task(_stream(connection, recording["pcm"], pace=2.0))
            completed = 0
            async with asyncio.timeout(180):
                async for event in connection:
                    seen.append(event)
                    if event.type == "error":
                        raise AssertionError(event)
                    if event.type == "conversation.item.input_audio_transcription.completed":
                        completed += 1
                        if completed == 2:
                            break
            await sender
            return seen

    seen = asyncio.run(run())
    kinds = [e.type for e in seen]
    assert kinds.count("input_audio_buffer.speech_started") == 2, kinds
    assert kinds.count("input_audio_buffer.speech_stopped") == 2, kinds
    assert kinds.count("input_audio_buffer.committed") == 2, kinds
    done = [e for e in seen if e.type == "conversation.item.input_audio_transcription.completed"]
    started = [e for e in seen if e.type == "input_audio_buffer.speech_started"]
    assert [d.item_id for d in done] == [s.item_id for s in started]
    assert all(d.content_index == 0 for d in done)
    joined = " ".join(d.transcript for d in done)
    assert _no_worse(joined, recording["http"]), (joined, recording["http"])


def test_manual_commit(rt_server: VoxServer, recording: dict[str, Any]) -> None:
    async def run() -> list[Any]:
        async with _connect(rt_server) as connection:
            seen: list[Any] = []
            await _until(connection, "session.created", seen)
            await connection.session.update(
                session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
            )
            updated = await _until(connection, "session.updated", seen)
            assert updated.session.audio.input.turn_detection is None
            await _stream(connection, recording["pcm"], pace=50.0)
            await connection.input_audio_buffer.commit()
            await _until(connection, "conversation.item.input_audio_transcription.completed", seen)
            return seen

    seen = asyncio.run(run())
    kinds = [e.type for e in seen]
    assert "input_audio_buffer.speech_started" not in kinds
    assert kinds.count("input_audio_buffer.committed") == 1
    text = seen[-1].transcript
    assert _no_worse(text, recording["http"]), (text, recording["http"])


def test_malformed_events_leave_the_session_usable(
    rt_server: VoxServer, recording: dict[str, Any]
) -> None:
    async def run() -> tuple[list[Any], Any]:
        async with _connect(rt_server) as connection:
            seen: list[Any] = []
            await _until(connection, "session.created", seen)
            bad: list[str | dict[str, Any]] = [
                "{not json",
                {"type": "no.such.event", "event_id": "c1"},
                {"type": "input_audio_buffer.append", "audio": "***", "event_id": "c2"},
                {"type": "session.update", "session": {"audio": {"input": {"format": "mp3"}}}},
                {"type": "input_audio_buffer.commit", "event_id": "c3"},  # empty buffer
            ]
            errors = []
            for event in bad:
                raw = event if isinstance(event, str) else json.dumps(event)
                await connection.send_raw(raw)
                errors.append(await _until(connection, "error", seen))
            await connection.session.update(
                session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
            )
            await _until(connection, "session.updated", seen)
            await _stream(connection, recording["pcm"], pace=50.0)
            await connection.input_audio_buffer.commit()
            done = await _until(
                connection, "conversation.item.input_audio_transcription.completed", seen
            )
            return errors, done

    errors, done = asyncio.run(run())
    codes = [e.error.code for e in errors]
    assert codes == [
        "invalid_json",
        "invalid_event",
        "invalid_value",
        "invalid_value",
        "input_audio_buffer_commit_empty",
    ], codes
    assert errors[1].error.event_id == "c1"
    assert errors[3].error.param == "session.audio.input.format"
    assert all(e.error.type == "invalid_request_error" for e in errors)
    assert wer(f"{FIRST} {SECOND}", done.transcript) < 0.5


def test_flood_is_refused_then_closed(rt_server: VoxServer) -> None:
    async def run() -> list[Any]:
        async with _connect(rt_server) as connection:
            seen: list[Any] = []
            await _until(connection, "session.created", seen)
            # Twelve seconds in one append: more than the session queues before its VAD.
            flood = np.zeros(RATE * 12, "<i2").tobytes()
            await connection.input_audio_buffer.append(audio=base64.b64encode(flood).decode())
            error = await _until(connection, "error", seen)
            # Then the server closes the socket: iteration ends (or raises ConnectionClosed).
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                async with asyncio.timeout(30):
                    async for event in connection:
                        seen.append(event)
            return [error]

    (error,) = asyncio.run(run())
    assert error.error.code == "input_audio_buffer_overflow"


def test_wrong_intent_is_refused(rt_server: VoxServer) -> None:
    async def run() -> Any:
        client = _aclient(rt_server)
        async with client.realtime.connect(extra_query={"intent": "conversation"}) as connection:
            return await connection.recv()

    event = asyncio.run(run())
    assert event.type == "error"
    assert event.error.param == "intent"


def test_disconnect_mid_turn_cancels_runner_work(
    rt_server: VoxServer, recording: dict[str, Any]
) -> None:
    long_pcm = recording["pcm"] * 4  # ~40 s: the tiny model needs a while for it
    started = "Processing audio with duration"  # faster-whisper's line: the runner is at work

    async def run() -> None:
        async with _connect(rt_server) as connection:
            seen: list[Any] = []
            await _until(connection, "session.created", seen)
            await connection.session.update(
                session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
            )
            await _until(connection, "session.updated", seen)
            await _stream(connection, long_pcm, pace=1000.0)
            working = rt_server.log().count(started)
            await connection.input_audio_buffer.commit()
            await _until(connection, "input_audio_buffer.committed", seen)
            await asyncio.to_thread(_wait_for_more, rt_server, started, working)
        # Leaving the block closes the socket while the turn is being transcribed.

    before = rt_server.log().count("cancelled")
    asyncio.run(run())
    _wait_for_more(rt_server, "cancelled", before)


def _wait_for_more(server: VoxServer, line: str, count: int) -> None:
    """Until the server log has more than ``count`` of ``line`` (a minute at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.log().count(line) <= count:
        time.sleep(0.05)
    assert server.log().count(line) > count, server.log()[-3000:]

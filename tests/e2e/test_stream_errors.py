"""End to end: protocol errors on both streams give an `error` event, then a meaningful close."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VoxServer
from tests.streaming.helpers import drain, open_ws

pytestmark = pytest.mark.e2e

STT_PATH = "/v1/audio/transcriptions/stream"
TTS_PATH = "/v1/audio/speech/stream"
STT_CONFIG = json.dumps({"type": "config", "model": "whisper:tiny.en"})
TTS_CONFIG = json.dumps({"type": "config", "model": "piper:en-us-joe-medium"})

CASES = [
    # (endpoint, frames sent, error code, close code)
    (STT_PATH, [b"\x00\x01" * 100], "config_required", 1003),
    (TTS_PATH, [b"\x00\x01"], "config_required", 1003),
    (STT_PATH, ["{not json"], "invalid_json", 1008),
    (TTS_PATH, [TTS_CONFIG, "[1, 2"], "invalid_json", 1008),
    (STT_PATH, [STT_CONFIG, '{"type": "flush"}'], "unknown_type", 1008),
    (TTS_PATH, [TTS_CONFIG, '{"type": "speak"}'], "unknown_type", 1008),
    (STT_PATH, [STT_CONFIG, STT_CONFIG], "duplicate_config", 1008),
    (TTS_PATH, [TTS_CONFIG, TTS_CONFIG], "duplicate_config", 1008),
    (STT_PATH, ['{"type": "end"}'], "config_required", 1008),
    (TTS_PATH, [TTS_CONFIG, '{"type": "text"}'], "invalid_message", 1008),
    (TTS_PATH, [TTS_CONFIG, b"audio?"], "unexpected_binary", 1003),
    (STT_PATH, ['{"type": "config", "model": "whisper:nope"}'], "model_not_found", 4404),
    (TTS_PATH, ['{"type": "config", "model": "piper:nope"}'], "model_not_found", 4404),
    (STT_PATH, ['{"type": "config", "model": "piper:en-us-joe-medium"}'], "invalid_config", 4400),
    (TTS_PATH, ['{"type": "config", "model": "whisper:tiny.en"}'], "invalid_config", 4400),
    (STT_PATH, ['{"type": "config", "overlap_ms": 20000}'], "invalid_config", 4400),
    (STT_PATH, ['{"type": "config", "input_format": "aiff"}'], "invalid_config", 4400),
    (TTS_PATH, ['{"type": "config", "speed": 9}'], "invalid_config", 4400),
    (TTS_PATH, ['{"type": "config", "voice": "nobody"}'], "invalid_config", 4400),
    (STT_PATH, ['{"type": "config", "input_format": "mp3"}', b"not an mp3"], "invalid_audio", 1003),
]


@pytest.mark.parametrize(("path", "frames", "code", "close"), CASES)
def test_protocol_error(
    pulled: VoxServer, path: str, frames: list[str | bytes], code: str, close: int
) -> None:
    with open_ws(pulled.url, path) as ws:
        for frame in frames:
            ws.send(frame)
        session = drain(ws)
    errors = session.of("error")
    assert len(errors) == 1, session.events
    assert errors[0]["code"] == code, errors[0]
    assert errors[0]["close_code"] == close
    assert errors[0]["message"]
    assert session.order[-1] == "error"  # nothing after the error
    assert session.close_code == close


@pytest.fixture(scope="module")
def small_server(
    pulled: VoxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VoxServer]:
    """A second server on the same home with tiny session limits."""
    env = {"VOX_STREAM_MAX_AUDIO_SECONDS": "3", "VOX_STREAM_MAX_TEXT_CHARS": "200"}
    log = Path(tmp_path_factory.mktemp("small")) / "server.log"
    server = VoxServer(pulled.home, log, env=env)
    server.start()
    yield server
    server.stop()


def test_session_over_the_audio_limit(small_server: VoxServer) -> None:
    with open_ws(small_server.url, STT_PATH) as ws:
        ws.send(STT_CONFIG)
        for _ in range(5):
            ws.send(b"\x00\x00" * 16000)  # one second of silence each
        session = drain(ws)
    (error,) = session.of("error")
    assert error["code"] == "session_too_large"
    assert "VOX_STREAM_MAX_AUDIO_SECONDS" in error["message"]
    assert session.close_code == 4413


def test_session_over_the_text_limit(small_server: VoxServer) -> None:
    with open_ws(small_server.url, TTS_PATH) as ws:
        ws.send(TTS_CONFIG)
        for _ in range(5):
            ws.send(json.dumps({"type": "text", "text": "word " * 20}))
        session = drain(ws)
    (error,) = session.of("error")
    assert error["code"] == "session_too_large"
    assert session.close_code == 4413

"""End to end: a 75-minute upload (over the 70 minutes one runner frame holds) is transcribed
in windows, and the words come back at the right times.

Before the fix any HTTP transcription over about 70 minutes failed with 500 FrameTooLarge.
The file is 75 minutes of 16 kHz PCM16 WAV (144 MB, under the 200 MB upload limit) made of
three piper-spoken phrases in silence: at the start, across the first window's nominal end
(10 minutes: the window is cut in the silence before the phrase, so it is not split), and
at the end. The trade-off: whisper:tiny.en on 75 minutes of sound takes many minutes on two
cores, so the request sets vad_filter, which lets the runner skip the silence; the control
plane's windowing, offsets and join are exercised in full all the same (eight windows).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.conftest import VoxServer, wer
from tests.reliability.audio_helpers import memory_kb, pull, wav

pytestmark = pytest.mark.e2e

STT, TTS = "whisper:tiny.en", "piper:en-us-joe-medium"
RATE = 16000
MINUTES = 75
WINDOW = 10 * 60.0  # audio.long_audio.WINDOW_SECONDS
PHRASES = {
    5.0: "The baker opened his shop early in the morning.",
    WINDOW - 4.0: "Two men carried heavy boxes into the library.",
    MINUTES * 60 - 10.0: "The old man fed the ducks by the pond.",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("long")
    vox = VoxServer(root / "home", root / "server.log")
    vox.start()
    pull(vox, STT, TTS)
    yield vox
    vox.stop()


def _speak(client: Any, text: str) -> np.ndarray:
    response = client.post("/api/synthesize", json={"model": TTS, "input": text})
    response.raise_for_status()
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    return np.asarray(soxr.resample(audio, rate, RATE) * 32767, dtype=np.int16)


def _meeting(client: Any) -> bytes:
    pcm = np.zeros(MINUTES * 60 * RATE, dtype=np.int16)
    for at, text in PHRASES.items():
        clip = _speak(client, text)
        start = int(at * RATE)
        pcm[start : start + clip.size] = clip
    return wav(RATE, 1, pcm.tobytes())


def test_75_minutes_in_windows(server: VoxServer) -> None:
    assert server.proc is not None
    with server.client(timeout=900) as client:
        data = _meeting(client)
        # As float32 for the runner it is twice its PCM16 size: more than one 256 MiB frame.
        assert len(data) * 2 > 256 * 1024 * 1024
        before = memory_kb(server.proc.pid)
        started = time.monotonic()
        response = client.post(
            "/api/transcribe",
            data={"model": STT, "word_timestamps": "true", "vad_filter": "true"},
            files={"file": ("meeting.wav", data, "audio/wav")},
        )
        elapsed = time.monotonic() - started
    after = memory_kb(server.proc.pid)
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    print(
        f"75 min: {elapsed:.1f} s, control-plane peak RSS {before['VmHWM']} -> {after['VmHWM']} kB"
    )
    assert body["duration"] == pytest.approx(MINUTES * 60, abs=1)
    words = [w for s in body["segments"] for w in s["words"]]
    for at, text in PHRASES.items():
        heard = " ".join(w["word"] for w in words if at - 2 <= w["start"] <= at + 6)
        assert wer(text, heard) <= 0.35, (at, text, heard)
    # Nothing but the three phrases: no window repeats another's words at a wrong time.
    assert len(words) <= sum(len(t.split()) for t in PHRASES.values()) + 6, words
    # About one window of decoded audio (38 MB float32) and its copies on the way into the
    # runner frame, not 75 minutes of it (288 MB, and as many again per copy).
    assert after["VmHWM"] - before["VmHWM"] < 300 * 1024, (before, after)

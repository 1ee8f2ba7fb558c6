"""OpenAI Realtime transcription latency: end of speech to ``.completed``, and first delta.

Starts a real `vox serve`, pulls whisper:tiny.en, piper joe and silero-vad:v6, speaks two
sentences through HTTP and builds a recording (0.5 s silence, sentence, 1.5 s silence,
sentence, 1.5 s silence) at 24 kHz pcm16. Each sentence alone is transcribed through HTTP
(median of --runs) as the baseline. Then 1 and 4 concurrent sessions (the openai SDK's
realtime client, server_vad defaults) stream the recording at real-time pace; per turn the
client notes when it sent the sentence's last sample (end of speech), the first delta and the
``.completed``. Goal (issue 17): end of speech to completed at most 1.3x the HTTP time of the
same sentence (medians over --rounds). server_vad waits silence_duration_ms (500 ms) of
silence before it may end a turn, so that wait is reported too and subtracted in the last
column. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import openai
import soxr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import VoxServer  # noqa: E402
from tests.openai.media import decode  # noqa: E402

RATE = 24000
STEP = RATE // 10  # 100 ms appends
SILENCE_MS = 500
SENTENCES = (
    "The weather today is sunny with a light breeze from the west.",
    "Please remember to bring the blue folder to the meeting tomorrow.",
)
MODELS = ("whisper:tiny.en", "piper:en-us-joe-medium", "silero-vad:v6")


def wav(pcm: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def speak(client: openai.OpenAI, text: str) -> np.ndarray:
    data = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="wav"
    ).content
    audio = decode(data)
    return np.asarray(soxr.resample(audio.samples, audio.rate, RATE), dtype=np.float32)


def http_seconds(client: openai.OpenAI, pcm: np.ndarray, runs: int) -> float:
    data = wav(pcm)
    client.audio.transcriptions.create(model="whisper-1", file=("u.wav", data))  # warm
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.audio.transcriptions.create(model="whisper-1", file=("u.wav", data))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def session(url: str, pcm: bytes, ends: list[int]) -> list[dict[str, float]]:
    """Stream at real-time pace; per turn: end of speech -> first delta and -> completed."""
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    turns: list[dict[str, float]] = []
    speech_end: list[float] = []
    first_delta: dict[str, float] = {}
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:

        async def send() -> None:
            start = time.perf_counter()
            for n, offset in enumerate(range(0, len(pcm), STEP * 2)):
                piece = pcm[offset : offset + STEP * 2]
                await connection.input_audio_buffer.append(audio=base64.b64encode(piece).decode())
                sent = offset // 2 + len(piece) // 2
                while len(speech_end) < len(ends) and sent >= ends[len(speech_end)]:
                    speech_end.append(time.perf_counter())
                await asyncio.sleep(max(0.0, start + (n + 1) * 0.1 - time.perf_counter()))

        sender = asyncio.create_task(send())
        async with asyncio.timeout(120):
            async for event in connection:
                now = time.perf_counter()
                if event.type == "error":
                    raise RuntimeError(event)
                if event.type == "conversation.item.input_audio_transcription.delta":
                    first_delta.setdefault(event.item_id, now)
                if event.type == "conversation.item.input_audio_transcription.completed":
                    end = speech_end[len(turns)]
                    turns.append(
                        {
                            "completed_s": now - end,
                            "first_delta_s": first_delta.get(event.item_id, now) - end,
                        }
                    )
                    if len(turns) == len(ends):
                        break
        await sender
    return turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="first HTTP baseline runs")
    parser.add_argument("--rounds", type=int, default=3, help="sessions per concurrency")
    parser.add_argument("--out", type=Path, default=Path("bench-realtime-oai.json"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="vox-bench-rt-oai-"))
    server = VoxServer(home / "home", home / "server.log")
    server.start()
    try:
        with server.client() as http:
            for name in MODELS:
                with http.stream("POST", "/api/pull", json={"model": name}) as response:
                    for _ in response.iter_lines():
                        pass
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=300)
        utterances = [speak(client, text) for text in SENTENCES]
        baseline = [http_seconds(client, u, args.runs) for u in utterances]
        gap = np.zeros(int(RATE * 1.5), np.float32)
        parts = [gap[: RATE // 2], utterances[0], gap, utterances[1], gap]
        ends = [RATE // 2 + len(utterances[0]), RATE // 2 + len(utterances[0]) + len(gap)]
        ends[1] += len(utterances[1])
        pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes()
        results: dict[str, Any] = {"http_s": baseline, "silence_duration_ms": SILENCE_MS}
        asyncio.run(session(server.url, pcm, ends))  # warm: the VAD's runner starts here
        for sessions in (1, 4):

            async def many(n: int = sessions) -> list[list[dict[str, float]]]:
                return list(
                    await asyncio.gather(*(session(server.url, pcm, ends) for _ in range(n)))
                )

            # The machine's load drifts: the HTTP baseline is measured again next to each round.
            runs, https = [], []
            for _ in range(args.rounds):
                https.append([http_seconds(client, u, 1) for u in utterances])
                runs += asyncio.run(many())
            rows = []
            for turn in range(len(utterances)):
                http_s = statistics.median(h[turn] for h in https)
                completed = statistics.median(r[turn]["completed_s"] for r in runs)
                delta = statistics.median(r[turn]["first_delta_s"] for r in runs)
                rows.append(
                    {
                        "turn": turn + 1,
                        "http_s": http_s,
                        "completed_s": completed,
                        "first_delta_s": delta,
                        "ratio": completed / http_s,
                        "ratio_after_silence": (completed - SILENCE_MS / 1000) / http_s,
                    }
                )
            results[f"sessions_{sessions}"] = rows
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"{'sessions':>8} {'turn':>4} {'http s':>7} {'end->completed':>15} "
        f"{'end->1st delta':>15} {'ratio':>6} {'ratio-silence':>13}"
    )
    for sessions in (1, 4):
        for row in results[f"sessions_{sessions}"]:
            print(
                f"{sessions:>8} {row['turn']:>4} {row['http_s']:>7.3f} {row['completed_s']:>15.3f} "
                f"{row['first_delta_s']:>15.3f} {row['ratio']:>6.2f} "
                f"{row['ratio_after_silence']:>13.2f}"
            )
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""One session's audio through the VAD model a step at a time: the realtime turn detector and
the WS STT stream's pause cuts hear speech the same way (the VAD is a model in its own runner,
which keeps each stream's state between calls)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING

from vox_control import inference
from vox_control.errors import VoxError
from vox_control.lazy import lazy_module
from vox_control.services import Services
from vox_control.sessions.windows import Pauses

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

VAD_MODEL = "silero-vad:v6"
RATE = 16000  # the VAD's rate, and Whisper's
# The WS STT stream's pause cuts: the VAD hears the audio in steps this long, and a window may
# end in the middle of a pause this long or longer: five of Silero's 32 ms frames. Between two
# sentences piper leaves about 0.3 s of silence, of which Silero calls 0.2-0.3 s silent; a
# comma's pause is shorter, and a cut there still splits no word.
PAUSE_STEP = RATE // 2
MIN_PAUSE = 5 * 512


def vad_installed(services: Services) -> bool:
    try:
        services.manifest(VAD_MODEL, "vad")
    except VoxError:
        return False
    return True


class VadStream:
    """Collects 16 kHz float32 samples; `detect` sends what has collected to the VAD."""

    def __init__(self, services: Services, stream: str) -> None:
        self.services = services
        self.stream = stream
        self.pending = 0  # samples collected and not yet heard
        self._pieces: list[np.ndarray] = []
        self._started = False

    def push(self, pcm: np.ndarray) -> None:
        if pcm.size:
            self._pieces.append(pcm)
            self.pending += pcm.size

    async def detect(self) -> list[float]:
        """Speech probabilities for the collected samples' whole frames, in order."""
        pcm = np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.float32)
        self._pieces, self.pending = [], 0
        async with self.services.scheduler.use(VAD_MODEL) as vad:
            reply = await inference.detect_speech(
                vad, pcm, RATE, self.stream, reset=not self._started
            )
        self._started = True
        return reply.probabilities

    def drop(self) -> None:
        """Forget what was collected: it will not be heard."""
        self._pieces, self.pending = [], 0

    async def end(self) -> None:
        """Drop the runner's state for this stream (best effort; the runner caps streams)."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                async with self.services.scheduler.use(VAD_MODEL) as vad:
                    await inference.detect_speech(
                        vad, np.zeros(0, np.float32), RATE, self.stream, end=True
                    )


class PauseListener:
    """Sends a session's audio to the VAD in steps and what it hears to ``pauses``."""

    def __init__(self, services: Services, pauses: Pauses) -> None:
        self.pauses = pauses
        self._vad = VadStream(services, f"stt_{uuid.uuid4().hex}")

    async def hear(self, samples: np.ndarray) -> None:
        self._vad.push(samples)
        if self._vad.pending >= PAUSE_STEP:
            self.pauses.feed(await self._vad.detect())

    async def end(self) -> None:
        await self._vad.end()

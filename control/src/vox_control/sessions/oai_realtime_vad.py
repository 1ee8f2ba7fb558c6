"""server_vad turn detection over a VAD model's per-frame speech probabilities (pure, no IO).

A turn starts at the first frame at or above ``threshold``; it is reported ``prefix_padding_ms``
earlier (never before the previous turn's end), as OpenAI's ``audio_start_ms`` includes the
padding. It ends once the probability has stayed below ``threshold - 0.15`` (Silero's own
hysteresis, so a dip does not split a word) for ``silence_duration_ms``; ``audio_end_ms`` is the
end of that silence, as OpenAI's includes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from vox_control.sessions.oai_realtime_events import TurnDetection

HYSTERESIS = 0.15


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int


TurnEvent = SpeechStarted | SpeechStopped


class TurnDetector:
    """Feed it every frame's probability in order; it answers with the turn boundaries."""

    def __init__(self, params: TurnDetection, frame_ms: float = 32.0) -> None:
        self.params = params
        self.frame_ms = frame_ms
        self.frames = 0  # frames seen since the session's audio began
        self.speaking = False
        self._silent_frames = 0
        self._floor_ms = 0  # a new turn never starts before this (the last turn's end)

    @property
    def silent_ms(self) -> float:
        """How long an open turn has been silent so far (0 while speaking or between turns)."""
        return self._silent_frames * self.frame_ms if self.speaking else 0.0

    def skip_to(self, ms: float) -> None:
        """Audio up to ``ms`` was committed or cleared by the client: start afresh there."""
        self.speaking = False
        self._silent_frames = 0
        self._floor_ms = max(self._floor_ms, int(ms))

    def feed(self, probabilities: list[float]) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        low = max(self.params.threshold - HYSTERESIS, 0.0)
        for probability in probabilities:
            start_ms = self.frames * self.frame_ms
            self.frames += 1
            if not self.speaking:
                if probability >= self.params.threshold and start_ms >= self._floor_ms:
                    self.speaking = True
                    self._silent_frames = 0
                    padded = max(start_ms - self.params.prefix_padding_ms, self._floor_ms, 0)
                    events.append(SpeechStarted(int(padded)))
                continue
            if probability >= low:
                self._silent_frames = 0
                continue
            self._silent_frames += 1
            if self._silent_frames * self.frame_ms >= self.params.silence_duration_ms:
                end_ms = int(self.frames * self.frame_ms)
                self.speaking = False
                self._silent_frames = 0
                self._floor_ms = end_ms
                events.append(SpeechStopped(end_ms))
        return events

"""Cut a growing stream of samples into overlapping fixed-size windows for transcription."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Samples ``[start, end)`` of the session's audio; ``index`` counts from 0."""

    index: int
    start: int
    end: int


class WindowPlanner:
    """Plans windows of ``chunk`` samples that overlap by ``overlap`` samples.

    Regular windows start every ``chunk - overlap`` samples and are ready as soon as their
    last sample has arrived. At the end of the session, the tail left after the last regular
    window becomes one final window that starts where the next regular one would (so it
    overlaps like any other), stretched back to at least a third of a chunk: a tail of a
    second or two transcribed on its own is where Whisper hallucinates likeliest. It does not
    reach back further: the encoder pads to 30 s anyway, but the decoder pays for every word
    it writes again (a whole-chunk reach-back cost 9% of streaming throughput).
    """

    def __init__(self, chunk: int, overlap: int) -> None:
        if chunk <= 0:
            raise ValueError("chunk must be positive")
        if not 0 <= overlap <= chunk // 2:
            raise ValueError("overlap must be between 0 and half the chunk")
        self.chunk = chunk
        self.step = chunk - overlap
        self._next_start = 0
        self._last: Window | None = None

    @property
    def last(self) -> Window | None:
        return self._last

    def ready(self, total: int) -> list[Window]:
        """Regular windows whose audio is complete once ``total`` samples have arrived."""
        out: list[Window] = []
        while self._next_start + self.chunk <= total:
            out.append(self._take(self._next_start, self._next_start + self.chunk))
            self._next_start += self.step
        return out

    def finish(self, total: int) -> list[Window]:
        """The remaining windows once the session's audio is complete at ``total`` samples."""
        out = self.ready(total)
        last = self._last
        if total <= 0 or (last is not None and total <= last.end):
            return out
        # Never before keep_from(): total >= last.end makes total - chunk // 3 later.
        start = 0 if last is None else min(last.start + self.step, total - self.chunk // 3)
        out.append(self._take(start, total))
        return out

    def keep_from(self) -> int:
        """The first sample any future window can need: everything before it may be dropped."""
        if self._last is None:
            return 0
        return self._last.start + self.step // 2

    def _take(self, start: int, end: int) -> Window:
        index = 0 if self._last is None else self._last.index + 1
        self._last = Window(index, start, end)
        return self._last

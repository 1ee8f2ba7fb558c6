"""Cut a growing stream of samples into windows for transcription: fixed-size and overlapping,
or, where a VAD tells where the speech pauses, cut at a pause."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Silero's own hysteresis: speech from 0.5, silence only below 0.35, so a dip inside a word
# is not a pause (the OpenAI Realtime turn detector uses the same two levels).
SILENCE_BELOW = 0.35


@dataclass(frozen=True)
class Window:
    """Samples ``[start, end)`` of the session's audio; ``index`` counts from 0.

    ``after_pause``: the window starts where the previous one ended, in a pause the VAD
    heard, so no word crosses the seam and there is nothing to stitch there.
    """

    index: int
    start: int
    end: int
    after_pause: bool = False


class Pauses:
    """Where the speech pauses, from a VAD's speech probability for each frame, in order."""

    def __init__(self, frame: int, min_pause: int) -> None:
        self.frame = frame
        self.min_pause = min_pause
        self.covered = 0  # samples the probabilities so far speak for
        self._spans: list[tuple[int, int]] = []  # closed pauses [start, end) of min_pause+
        self._open: int | None = None  # start of the silence under way

    def feed(self, probabilities: Iterable[float]) -> None:
        for probability in probabilities:
            if probability < SILENCE_BELOW:
                if self._open is None:
                    self._open = self.covered
            elif self._open is not None:
                if self.covered - self._open >= self.min_pause:
                    self._spans.append((self._open, self.covered))
                self._open = None
            self.covered += self.frame

    def cut_within(self, low: int, high: int) -> int | None:
        """The middle of the longest pause (the latest of equals) whose middle lies in
        ``(low, high]``, if any: the longest is likeliest between sentences."""
        spans = list(self._spans)
        if self._open is not None and self.covered - self._open >= self.min_pause:
            spans.append((self._open, self.covered))
        best: tuple[int, int] | None = None
        for start, end in spans:
            middle = (start + end) // 2
            if low < middle <= high and (best is None or end - start >= best[0]):
                best = (end - start, middle)
        return None if best is None else best[1]

    def forget_before(self, sample: int) -> None:
        """Pauses that end before ``sample`` can no longer hold a cut."""
        self._spans = [span for span in self._spans if span[1] > sample]


class WindowPlanner:
    """Plans windows of ``chunk`` samples that overlap by ``overlap`` samples.

    Regular windows start every ``chunk - overlap`` samples and are ready as soon as their
    last sample has arrived. At the end of the session, the tail left after the last regular
    window becomes one final window that starts where the next regular one would (so it
    overlaps like any other), stretched back to at least a third of a chunk: a tail of a
    second or two transcribed on its own is where Whisper hallucinates likeliest. It does not
    reach back further: the encoder pads to 30 s anyway, but the decoder pays for every word
    it writes again (a whole-chunk reach-back cost 9% of streaming throughput).

    Given ``pauses``, a window waits until the VAD has heard its whole chunk, then ends in the
    middle of the longest pause in its second half, and the next one starts right there, with
    no overlap: a seam in silence splits no word. With no such pause it is a regular window.
    """

    def __init__(self, chunk: int, overlap: int, pauses: Pauses | None = None) -> None:
        if chunk <= 0:
            raise ValueError("chunk must be positive")
        if not 0 <= overlap <= chunk // 2:
            raise ValueError("overlap must be between 0 and half the chunk")
        self.chunk = chunk
        self.step = chunk - overlap
        self.pauses = pauses
        self._next_start = 0
        self._after_pause = False
        self._last: Window | None = None

    @property
    def last(self) -> Window | None:
        return self._last

    def ready(self, total: int) -> list[Window]:
        """Windows whose audio is complete once ``total`` samples have arrived."""
        heard = total if self.pauses is None else min(total, self.pauses.covered)
        out: list[Window] = []
        while self._next_start + self.chunk <= heard:
            start = self._next_start
            cut = None
            if self.pauses is not None:
                cut = self.pauses.cut_within(start + self.chunk // 2, start + self.chunk)
            if cut is None:
                out.append(self._take(start, start + self.chunk))
                self._next_start, self._after_pause = start + self.step, False
            else:
                out.append(self._take(start, cut))
                self._next_start, self._after_pause = cut, True
        if self.pauses is not None:
            self.pauses.forget_before(self._next_start)
        return out

    def finish(self, total: int) -> list[Window]:
        """The remaining windows once the session's audio is complete at ``total`` samples."""
        if self.pauses is not None:
            self.pauses.covered = max(self.pauses.covered, total)  # the rest is heard now
        out = self.ready(total)
        last = self._last
        if total <= 0 or (last is not None and total <= last.end):
            return out
        # Never before keep_from(): total >= last.end makes total - chunk // 3 later.
        start = 0 if last is None else min(self._next_start, total - self.chunk // 3)
        self._after_pause = self._after_pause and start == self._next_start
        out.append(self._take(start, total))
        return out

    def keep_from(self) -> int:
        """The first sample any future window can need: everything before it may be dropped."""
        if self._last is None:
            return 0
        last = self._last
        return min(last.start + self.step // 2, last.end - self.chunk // 3)

    def _take(self, start: int, end: int) -> Window:
        index = 0 if self._last is None else self._last.index + 1
        self._last = Window(index, start, end, self._after_pause)
        return self._last

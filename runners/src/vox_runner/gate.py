"""The inference gate: ``parallel`` slots handed out by rank, and the rank of speech streams.

When a slot frees, the waiter with the lowest rank goes next (ranks are computed then, not on
arrival, since a stream's urgency grows while it waits):

0. load and unload (they take every slot, so the model under everyone changes once);
1. one-shot work (a transcription, a VAD step) and the first sentence of a speech stream, in
   arrival order: what a waiting user hears or reads first;
2. a sentence of a stream whose listener is about to run out of audio (the audio sent so far,
   played in real time from its first chunk, ends within the margin), the earliest end first;
3. every other sentence, oldest stream first and in order within it.

Rank 3 is what keeps throughput and totals: a burst of clients each hear their first sentence
one after another, then the oldest stream is finished while the others still play theirs,
instead of every stream advancing one sentence a turn and all ending together at the end of
the burst. Rank 2 keeps that from starving a stream a listener is playing; under overload
(every stream short of audio) it degrades to earliest-deadline-first, which is round robin.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

Rank = tuple[int, float, int]
EXCLUSIVE, FIRST, RUNNING_DRY, LATER = 0, 1, 2, 3

_MIN_MARGIN_S = 1.0  # a stream with less audio left than this (or 3 sentences' work) is urgent
_STREAM_IDLE_S = 60.0  # a stream not heard of for this long is forgotten


@dataclass(eq=False)
class _Waiter:
    rank: Callable[[], Rank]
    slots: int
    granted: asyncio.Future[None]


class Gate:
    """``parallel`` slots; load and unload take all of them."""

    def __init__(self, parallel: int) -> None:
        self._parallel = parallel
        self._free = parallel
        self._waiters: list[_Waiter] = []
        self._tickets = itertools.count()

    def ticket(self) -> int:
        """The next arrival number: the order of equals in rank."""
        return next(self._tickets)

    @contextlib.asynccontextmanager
    async def shared(self, rank: Callable[[], Rank] | None = None) -> AsyncIterator[None]:
        """One slot, when ``rank`` (default: one-shot work, in arrival order) is the lowest."""
        if rank is None:
            fixed: Rank = (FIRST, self.ticket(), 0)
            rank = lambda: fixed  # noqa: E731
        await self._acquire(rank, 1)
        try:
            yield
        finally:
            self._release(1)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Every slot at once: while it waits, nothing else starts (it ranks first)."""
        fixed: Rank = (EXCLUSIVE, self.ticket(), 0)
        await self._acquire(lambda: fixed, self._parallel)
        try:
            yield
        finally:
            self._release(self._parallel)

    async def _acquire(self, rank: Callable[[], Rank], slots: int) -> None:
        if self._free >= slots and not self._waiters:
            self._free -= slots
            return
        waiter = _Waiter(rank, slots, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._release(slots)  # granted, then cancelled before it could run: pass it on
            else:
                if waiter in self._waiters:  # a release may have dropped it already
                    self._waiters.remove(waiter)
                self._release(0)  # it may have held back a waiter ranked below it
            raise

    def _release(self, slots: int) -> None:
        self._free += slots
        while self._waiters:
            best = min(self._waiters, key=lambda w: w.rank())
            if best.granted.done():
                # Its task was cancelled (which cancels the future it awaits) and has not run
                # its cleanup yet: it wants nothing now.
                self._waiters.remove(best)
                continue
            if best.slots > self._free:
                return  # the best waits for more slots; nobody overtakes it
            self._waiters.remove(best)
            self._free -= best.slots
            best.granted.set_result(None)


class SpeechStream:
    """One client's speech, sentence by sentence (one Synthesize each), as the gate ranks it."""

    def __init__(self, streams: Streams, order: int) -> None:
        self._streams = streams
        self.order = order
        self.sentences = 0  # Synthesize requests seen: the next one's number
        self.first_audio: float | None = None  # when its first chunk was sent
        self.audio_s = 0.0  # audio sent, in seconds
        self.seen = streams.clock()

    def sentence(self) -> Callable[[], Rank]:
        """A new sentence (request) of this stream: the rank of each of its slot takes."""
        number = self.sentences
        self.sentences += 1
        self.seen = self._streams.clock()
        return lambda: self.rank(number)

    def rank(self, sentence: int) -> Rank:
        if self.first_audio is None:
            # Its first sentence is first audio; the next one (sent ahead) waits its turn.
            return (FIRST, self.order, 0) if sentence == 0 else (LATER, self.order, sentence)
        ends = self.first_audio + self.audio_s
        if ends - self._streams.clock() < self._streams.margin():
            return (RUNNING_DRY, ends, sentence)
        return (LATER, self.order, sentence)

    def sent(self, seconds: float) -> None:
        """A chunk of ``seconds`` of audio went to the client."""
        now = self._streams.clock()
        if self.first_audio is None:
            self.first_audio = now
        self.audio_s += seconds
        self.seen = now


class Streams:
    """The speech streams in flight, by the control plane's stream key."""

    def __init__(self, gate: Gate, clock: Callable[[], float] = time.monotonic) -> None:
        self._gate = gate
        self.clock = clock
        self._streams: dict[str, SpeechStream] = {}
        self._work_s = 0.0  # running mean of one slot's work (a sentence)

    def open(self, key: str) -> SpeechStream:
        """The stream ``key`` names (a new one if unknown); an empty key: a stream of its own."""
        now = self.clock()
        for stale in [k for k, s in self._streams.items() if now - s.seen > _STREAM_IDLE_S]:
            del self._streams[stale]
        stream = self._streams.get(key) if key else None
        if stream is None:
            stream = SpeechStream(self, self._gate.ticket())
            if key:
                self._streams[key] = stream
        return stream

    def worked(self, seconds: float) -> None:
        """One slot's work took ``seconds``: the margin follows how long a sentence takes."""
        self._work_s = seconds if not self._work_s else 0.8 * self._work_s + 0.2 * seconds

    def margin(self) -> float:
        return max(_MIN_MARGIN_S, 3 * self._work_s)

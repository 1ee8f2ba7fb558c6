"""Transcriptions that wait for the inference gate ride along with the one that gets it.

Nothing waits to form a batch: a lone request runs alone, as before. But while one
transcription holds the slot, others queue behind it; when the next of them gets the slot it
takes every waiting request of the same ``batch_key`` (up to ``limit``) into one model call.
On this CPU that answered 1.25x the requests/s at 2 waiting, 1.47x at 4 and 1.41x at 8
(bench/batching.py, same words), and the encoder and beam search batch better still on a GPU.

A request taken into another's batch stops waiting for the gate and gets its result from the
batch. Cancelling a request that is in a running batch drops its result only: the batch's
other requests still need the model call, which cannot be stopped part way. Errors of the
batch call reach every request in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from vox_protocol import Transcribe, Transcript

from vox_runner.adapter import Adapter
from vox_runner.gate import Gate

log = logging.getLogger("vox_runner.batching")

LIMIT = 8  # past 4 the CPU gained nothing more, and each result waits for the whole batch


@dataclass(eq=False)
class _Entry:
    request: Transcribe
    result: asyncio.Future[Transcript] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher:
    """Batches the transcriptions of one runner by the adapter's ``batch_key``."""

    def __init__(self, gate: Gate, adapter: Adapter, limit: int = LIMIT) -> None:
        self._gate = gate
        self._adapter = adapter
        self._limit = limit
        self._waiting: dict[Hashable, list[_Entry]] = {}

    async def transcribe(self, request: Transcribe, key: Hashable) -> Transcript:
        """``request``'s transcript, from its own batch or from one that took it along."""
        entry = _Entry(request)
        self._waiting.setdefault(key, []).append(entry)
        turn = asyncio.ensure_future(self._take_turn(key, entry))
        try:
            waits: set[asyncio.Future[Any]] = {turn, entry.result}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._forget(key, entry)
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
            raise
        if not turn.done():
            # Another request's batch answered this one: give up its place at the gate.
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
        else:
            turn.result()  # the batch call's own failure, if any, is raised here
        return entry.result.result()

    async def _take_turn(self, key: Hashable, entry: _Entry) -> None:
        async with self._gate.shared():
            if entry.result.done():
                return  # answered by a batch that ended as the slot came
            batch = self._take(key, entry)
            if len(batch) == 1:
                # Alone: the adapter's own path, whose cancellation stops the decoding.
                entry.result.set_result(await self._adapter.transcribe(entry.request))
                return
            # Shielded: a cancelled leader must not cancel the call its riders wait for.
            await asyncio.shield(asyncio.ensure_future(self._run(batch)))

    def _take(self, key: Hashable, leader: _Entry) -> list[_Entry]:
        waiting = self._waiting.get(key, [])
        with contextlib.suppress(ValueError):
            waiting.remove(leader)
        batch = [leader, *waiting[: self._limit - 1]]
        del waiting[: self._limit - 1]
        if not waiting:
            self._waiting.pop(key, None)
        return batch

    async def _run(self, batch: list[_Entry]) -> None:
        log.info("transcribing %d requests in one batch", len(batch))
        try:
            results = await self._adapter.transcribe_batch([e.request for e in batch])
        except asyncio.CancelledError:
            for entry in batch:
                entry.result.cancel()
            raise
        except Exception as exc:
            for entry in batch:
                if not entry.result.done():
                    entry.result.set_exception(exc)
                    entry.result.exception()  # marked read: a cancelled rider never reads it
            raise
        for entry, result in zip(batch, results, strict=True):
            if not entry.result.done():
                entry.result.set_result(result)

    def _forget(self, key: Hashable, entry: _Entry) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None and entry in waiting:
            waiting.remove(entry)
            if not waiting:
                self._waiting.pop(key, None)

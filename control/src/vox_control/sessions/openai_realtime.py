"""WS /v1/realtime?intent=transcription: OpenAI Realtime transcription sessions.

Three tasks per session: the receiver parses client events and decodes audio (to 16 kHz
float32, one streaming resampler per session), the turn worker runs the VAD model on ~160 ms
pieces as audio arrives and cuts turns (or takes the client's commits), and the transcriber
transcribes committed turns in order. Every model call goes through vox_control.inference (the
VAD is a model in its own runner); a disconnect cancels the tasks and the runner calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from vox_protocol import Transcript

from vox_control import inference
from vox_control.errors import VoxError, classify
from vox_control.lazy import lazy_module
from vox_control.renderers import oai_realtime_error
from vox_control.services import Services
from vox_control.sessions.channel import Channel, ClientGone
from vox_control.sessions.oai_realtime_events import (
    Append,
    Clear,
    Commit,
    EventError,
    Limits,
    SessionClosed,
    SessionConfig,
    Turn,
    TurnDetection,
    apply_update,
    decode_append,
    item_id,
    resampler,
    server_event,
    session_object,
    user_item,
)
from vox_control.sessions.oai_realtime_vad import SpeechStarted, SpeechStopped, TurnDetector
from vox_control.sessions.vad_stream import RATE, VAD_MODEL, VadStream, vad_installed

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

log = logging.getLogger("vox.sessions.openai_realtime")

VAD_STEP = RATE * 160 // 1000  # run the VAD once this much new audio has arrived
PARTIAL_EVERY = RATE  # a partial transcript per second of new speech in an open turn
# Once an open turn has been silent this long (or half its silence_duration_ms, if less), its
# final transcript starts: most turns end there, and the transcript is then ready sooner after
# the turn ends. Speech that resumes drops it.
EARLY_AFTER_MS = 200


class OpenAIRealtimeSession:
    def __init__(self, channel: Channel, services: Services, limits: Limits | None = None) -> None:
        self.channel = channel
        self.services = services
        self.limits = limits or Limits()
        self.session_id = f"sess_{uuid.uuid4().hex[:16]}"
        self._vad = VadStream(services, self.session_id)
        self.config = SessionConfig(model=None)
        self.model = inference.resolve(services, None, "stt")
        self.vad_ok = vad_installed(services)
        if not self.vad_ok:
            self.config = SessionConfig(turn_detection=None)
        self._resampler = resampler(self.config.format)
        self._work: asyncio.Queue[Append | Commit | Clear] = asyncio.Queue()
        self._pending = 0  # samples queued for the turn worker
        self._turns: asyncio.Queue[Turn] = asyncio.Queue()
        # The turn worker's state: audio since ``_base`` (samples since the session began).
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._base = 0
        self._detector = TurnDetector(self.config.turn_detection or TurnDetection())
        self._turn_item: str | None = None
        self._turn_start = 0
        self._last_item: str | None = None
        self._partial: asyncio.Task[None] | None = None
        self._partial_at = 0
        self._early: tuple[str, asyncio.Task[Transcript]] | None = None
        self._sent: dict[str, str] = {}  # text already sent as deltas, per item

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        await self._send("session.created", session=self._session())
        tasks = [
            asyncio.create_task(self._turn_worker(), name="oai-rt-turns"),
            asyncio.create_task(self._transcriber(), name="oai-rt-transcribe"),
        ]
        receiver = asyncio.create_task(self._receiver(), name="oai-rt-receive")
        try:
            done, _ = await asyncio.wait([receiver, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        except ClientGone:
            log.info("realtime session %s: client gone", self.session_id)
        except SessionClosed as exc:
            with contextlib.suppress(ClientGone):
                await self.channel.send_event(oai_realtime_error(classify(exc), None))
            await self.channel.close(exc.close_code, exc.code)
        finally:
            self._drop_early()
            for task in [receiver, *tasks, *([self._partial] if self._partial else [])]:
                task.cancel()
            await asyncio.gather(receiver, *tasks, return_exceptions=True)
            await self._vad.end()
            await self.channel.close()

    async def _send(self, kind: str, **fields: Any) -> None:
        await self.channel.send_event(server_event(kind, **fields))

    async def _error(self, exc: Exception, client_event_id: str | None) -> None:
        await self.channel.send_event(oai_realtime_error(classify(exc), client_event_id))

    def _session(self) -> dict[str, Any]:
        return session_object(self.session_id, self.config, self.model.name)

    # ------------------------------------------------------------------ receiver

    async def _receiver(self) -> None:
        while True:
            try:
                frame = await asyncio.wait_for(self.channel.receive(), self.limits.idle_timeout_s)
            except TimeoutError:
                raise SessionClosed(
                    f"no client event for {self.limits.idle_timeout_s:g} s", "idle_timeout", 1000
                ) from None
            client_id: str | None = None
            try:
                if isinstance(frame, bytes):
                    raise EventError("events are JSON text frames", code="invalid_event")
                try:
                    event = msgspec.json.decode(frame)
                except (msgspec.DecodeError, RecursionError):
                    raise EventError("the event is not valid JSON", code="invalid_json") from None
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    raise EventError('an event is a JSON object with a string "type"', param="type")
                raw_id = event.get("event_id")
                client_id = raw_id if isinstance(raw_id, str) else None
                await self._handle(event)
            except EventError as exc:
                await self._error(exc, client_id)

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        client_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if kind == "input_audio_buffer.append":
            pcm = decode_append(event.get("audio"), self.config.format)
            resampled = self._resampler.resample_chunk(pcm)
            self._pending += len(resampled)
            if self._pending > self.limits.max_pending_s * RATE:
                raise SessionClosed(
                    "audio arrives faster than it can be processed; the input buffer is full",
                    "input_audio_buffer_overflow",
                    1008,
                )
            self._work.put_nowait(Append(resampled))
        elif kind == "input_audio_buffer.commit":
            self._work.put_nowait(Commit(client_id))
        elif kind == "input_audio_buffer.clear":
            self._work.put_nowait(Clear(client_id))
        elif kind in ("session.update", "transcription_session.update"):
            await self._update(event.get("session"))
        else:
            raise EventError(
                f"unknown or unsupported event type {kind!r}", param="type", code="invalid_event"
            )

    async def _update(self, session: object) -> None:
        config = apply_update(self.config, session)
        if config.turn_detection is not None and not self.vad_ok:
            raise EventError(
                f"server_vad needs the VAD model: run `vox pull {VAD_MODEL}`",
                param="session.audio.input.turn_detection",
                code="model_not_found",
            )
        try:
            model = inference.resolve(self.services, config.model, "stt")
        except VoxError as exc:
            raise EventError(
                exc.message, param="session.audio.input.transcription.model", code=exc.code
            ) from None
        if config.format != self.config.format:
            self._resampler = resampler(config.format)
        self.config, self.model = config, model
        if config.turn_detection is not None:
            self._work.put_nowait(Clear(None))  # new VAD parameters start on fresh audio
        await self._send("session.updated", session=self._session())

    # ------------------------------------------------------------------ turns

    async def _turn_worker(self) -> None:
        while True:
            work = await self._work.get()
            if isinstance(work, Append):
                self._pending -= len(work.pcm)
                self._buffer.append(work.pcm)
                self._buffered += len(work.pcm)
                if self._buffered > self.limits.max_buffer_s * RATE:
                    raise SessionClosed(
                        f"more than {self.limits.max_buffer_s:g} s of uncommitted audio",
                        "input_audio_buffer_overflow",
                        1009,
                    )
                if self.config.turn_detection is not None:
                    self._vad.push(work.pcm)
                    if self._vad.pending >= VAD_STEP and self._work.empty():
                        await self._detect()
            elif isinstance(work, Commit):
                await self._commit(work.client_event_id)
            else:
                self._cut(self._base + self._buffered)
                self._turn_item = None
                self._detector.skip_to(self._end_ms())
                await self._send("input_audio_buffer.cleared")

    def _end_ms(self) -> int:
        return (self._base + self._buffered) * 1000 // RATE

    async def _detect(self) -> None:
        td = self.config.turn_detection
        if td is None:
            self._vad.drop()
            return
        if self._detector.params != td:
            self._detector = TurnDetector(td)
            self._detector.frames = (self._base + self._buffered - self._vad.pending) // 512
        for event in self._detector.feed(await self._vad.detect()):
            if isinstance(event, SpeechStarted):
                self._turn_item = item_id()
                self._turn_start = event.audio_start_ms * RATE // 1000
                self._partial_at = self._turn_start
                self._cut(self._turn_start)
                await self._send(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=event.audio_start_ms,
                    item_id=self._turn_item,
                )
            elif isinstance(event, SpeechStopped) and self._turn_item is not None:
                await self._send(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=event.audio_end_ms,
                    item_id=self._turn_item,
                )
                await self._commit(None, end=event.audio_end_ms * RATE // 1000)
        if self._turn_item is None:
            # Between turns only the prefix padding can still become part of one.
            self._cut(self._base + self._buffered - td.prefix_padding_ms * RATE // 1000)
        elif self._detector.silent_ms >= min(EARLY_AFTER_MS, td.silence_duration_ms / 2):
            if self._early is None:
                pcm = np.concatenate(self._buffer)
                self._early = (self._turn_item, asyncio.create_task(self._transcribe(pcm)))
        else:
            self._drop_early()  # speech resumed: the turn goes on
            if self._base + self._buffered - self._partial_at >= PARTIAL_EVERY:
                self._partial_at = self._base + self._buffered
                if self._partial is None or self._partial.done():
                    self._partial = asyncio.create_task(self._partial_transcript(self._turn_item))

    def _drop_early(self) -> None:
        if self._early is None:
            return
        task = self._early[1]
        self._early = None
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a dropped failure is no failure
        task.cancel()

    def _cut(self, start: int) -> None:
        """Drop buffered audio before sample ``start`` (counted from the session's start)."""
        drop = min(max(start - self._base, 0), self._buffered)
        if not drop:
            return
        pcm = np.concatenate(self._buffer)[drop:]
        self._buffer = [pcm] if len(pcm) else []
        self._buffered -= drop
        self._base += drop

    async def _commit(self, client_event_id: str | None, end: int | None = None) -> None:
        stop = self._base + self._buffered if end is None else min(end, self._base + self._buffered)
        length = stop - self._base
        if length <= 0 and end is None:
            await self._error(
                EventError(
                    "the input audio buffer is empty", code="input_audio_buffer_commit_empty"
                ),
                client_event_id,
            )
            return
        pcm = np.concatenate(self._buffer)[:length] if self._buffer else np.zeros(0, np.float32)
        self._cut(stop)
        item = self._turn_item or item_id()
        early = None
        if self._early is not None and self._early[0] == item:
            early, self._early = self._early[1], None
        self._drop_early()
        self._turn_item = None
        self._detector.skip_to(stop * 1000 // RATE)
        if self._partial is not None:
            self._partial.cancel()  # the final transcript replaces it
        await self._send(
            "input_audio_buffer.committed", item_id=item, previous_item_id=self._last_item
        )
        await self._send(
            "conversation.item.added", previous_item_id=self._last_item, item=user_item(item)
        )
        self._last_item = item
        self._turns.put_nowait(Turn(item, pcm, early))

    # ------------------------------------------------------------------ transcription

    def _options(self) -> inference.TranscribeOptions:
        return inference.TranscribeOptions(language=self.config.language, prompt=self.config.prompt)

    async def _transcribe(self, pcm: np.ndarray) -> Transcript:
        return await inference.transcribe(self.services, self.model, pcm, RATE, self._options())

    async def _partial_transcript(self, item: str) -> None:
        """A partial of the open turn, only while the model's runner is idle: partials must
        never queue ahead of any session's final transcript."""
        pcm = np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.float32)
        try:
            async with self.services.scheduler.use(self.model.name) as loaded:
                if loaded.runner.in_flight:
                    return
                result = await inference.transcribe_loaded(loaded, pcm, RATE, self._options())
        except VoxError:
            return  # a partial is best effort; the final transcript reports failures
        if self._turn_item == item:
            await self._delta(item, result.text.strip())

    async def _delta(self, item: str, text: str) -> None:
        """Deltas append: only text that extends what was sent goes out (a final transcript
        that differs from the partials replaces them in ``.completed``)."""
        sent = self._sent.get(item, "")
        if text.startswith(sent) and len(text) > len(sent):
            self._sent[item] = text
            await self._send(
                "conversation.item.input_audio_transcription.delta",
                item_id=item,
                content_index=0,
                delta=text[len(sent) :],
            )

    async def _transcriber(self) -> None:
        while True:
            turn = await self._turns.get()
            try:
                result = await (turn.early or self._transcribe(turn.pcm))
            except VoxError as exc:
                await self._send(
                    "conversation.item.input_audio_transcription.failed",
                    item_id=turn.item_id,
                    content_index=0,
                    error=oai_realtime_error(classify(exc), None)["error"],
                )
                continue
            text = result.text.strip()
            await self._delta(turn.item_id, text)
            self._sent.pop(turn.item_id, None)
            await self._send(
                "conversation.item.input_audio_transcription.completed",
                item_id=turn.item_id,
                content_index=0,
                transcript=text,
                usage={"type": "duration", "seconds": round(len(turn.pcm) / RATE, 3)},
            )

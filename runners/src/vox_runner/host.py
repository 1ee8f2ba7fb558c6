"""The runner host: the handshake, then one task per request around a single adapter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from vox_protocol import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    AudioChunk,
    Cancel,
    ControlMessage,
    DetectSpeech,
    Error,
    ErrorCode,
    Heartbeat,
    Hello,
    ListVoices,
    Load,
    Loaded,
    ModelInfo,
    ProtocolError,
    RunnerMessage,
    Shutdown,
    SpeechProbabilities,
    SynthesisDone,
    Synthesize,
    Transcribe,
    Transcript,
    Unload,
    Voices,
    Welcome,
)

import vox_runner
from vox_runner.adapter import Adapter, AdapterError, SynthChunk, load_adapter
from vox_runner.batching import Batcher
from vox_runner.gate import Gate, Streams
from vox_runner.memory import release_memory
from vox_runner.pipes import FrameWriter, read_messages

log = logging.getLogger("vox_runner.host")

EXIT_OK = 0  # Shutdown, or stdin closed (the control plane is gone)
EXIT_ERROR = 1  # unexpected crash of the host itself
EXIT_PROTOCOL = 2  # undecodable or out-of-order frame
EXIT_VERSION = 3  # handshake: protocol versions differ
EXIT_ADAPTER = 4  # the requested adapter could not be imported

_STOP_GRACE = 2.0  # seconds for cancelled requests to answer before the runner exits
_MIN_HEARTBEAT = 0.05  # seconds: a control plane cannot make a runner spin on heartbeats

Send = Callable[[RunnerMessage], Coroutine[Any, Any, None]]
# A request's work: streams what it must on the way, returns its final reply (if any).
Work = Callable[[], Coroutine[Any, Any, RunnerMessage | None]]


class RunnerHost:
    """Serves one adapter: each request is its own task, so Cancel stays responsive."""

    def __init__(self, adapter: Adapter, send: Send, *, parallel: int = 1) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.adapter = adapter
        self._send = send
        self._gate = Gate(parallel)
        self._streams = Streams(self._gate)
        self._batcher = Batcher(self._gate, adapter)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._info: ModelInfo | None = None
        self._loaded_as: tuple[object, ...] = ()  # the Load's model_dir, device and options
        self._heartbeat: asyncio.Task[None] | None = None

    async def run(self, messages: AsyncIterator[ControlMessage]) -> int:
        """Handshake, then dispatch until Shutdown or EOF; returns the process exit code."""
        try:
            hello = await handshake(messages, self._send, self.adapter.name)
            if isinstance(hello, int):
                return hello
            if hello.heartbeat_s > 0:
                self._heartbeat = asyncio.create_task(self._beat(heartbeat_interval(hello)))
            async for message in messages:
                if isinstance(message, Shutdown):
                    log.info("shutdown requested")
                    return EXIT_OK
                self._dispatch(message)
            log.info("stdin closed: the control plane is gone, exiting")
            return EXIT_OK
        except ProtocolError as exc:
            log.error("protocol error, exiting: %s", exc)
            await self._send(Error(id=0, code="protocol", message=str(exc)))
            return EXIT_PROTOCOL
        finally:
            await self._stop()

    async def _beat(self, interval: float) -> None:
        """While a request is in flight, say so every ``interval``: one blocking inference
        call (a long window, a slow GPU sentence) may legitimately outlast the watchdog."""
        while True:
            await asyncio.sleep(interval)
            if self._tasks:
                await self._send(Heartbeat(in_flight=len(self._tasks)))

    def _dispatch(self, message: ControlMessage) -> None:
        match message:
            case Load():
                self._spawn(message.id, lambda: self._load(message), "load_failed", trim=True)
            case Unload():
                self._spawn(message.id, lambda: self._unload(message), "internal")
            case Transcribe():
                self._spawn(
                    message.id, lambda: self._transcribe(message), "inference_failed", trim=True
                )
            case Synthesize():
                self._spawn(
                    message.id, lambda: self._synthesize(message), "inference_failed", trim=True
                )
            case DetectSpeech():
                self._spawn(message.id, lambda: self._detect_speech(message), "inference_failed")
            case ListVoices():
                self._spawn(message.id, lambda: self._list_voices(message), "internal")
            case Cancel(id=request_id):
                task = self._tasks.get(request_id)
                if task is None:
                    # It may have just finished: its answer is already on the wire.
                    log.debug("cancel of unknown or finished request %d", request_id)
                else:
                    task.cancel()
            case Hello():
                raise ProtocolError("unexpected hello after the handshake")
            case Shutdown():  # handled by run(); listed so the match is exhaustive
                pass

    def _spawn(
        self, request_id: int, work: Work, failure: ErrorCode, *, trim: bool = False
    ) -> None:
        if request_id in self._tasks:
            message = f"request id {request_id} is already in flight"
            self._spawn_send(Error(id=request_id, code="bad_request", message=message))
            return
        task = asyncio.create_task(self._guard(request_id, work, failure, trim))
        self._tasks[request_id] = task

    def _spawn_send(self, message: RunnerMessage) -> None:
        task = asyncio.create_task(self._send(message))
        # Keep a reference until done: the loop only holds weak references to tasks.
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _guard(self, request_id: int, work: Work, failure: ErrorCode, trim: bool) -> None:
        """Turn every way a request can end into exactly one terminal frame (or none)."""
        final: RunnerMessage | None
        try:
            final = await work()
        except asyncio.CancelledError:
            # Our own Cancel (or shutdown) cancelled this task: answer instead of propagating.
            log.info("request %d cancelled", request_id)
            final = Error(id=request_id, code="cancelled", message="request cancelled")
        except AdapterError as exc:
            code: ErrorCode = failure if failure == "load_failed" else exc.code
            log.warning("request %d failed (%s): %s", request_id, exc.code, exc.message)
            final = Error(id=request_id, code=code, message=exc.message)
        except Exception as exc:
            log.exception("request %d failed", request_id)
            final = Error(id=request_id, code=failure, message=f"{type(exc).__name__}: {exc}")
        finally:
            # From here on a Cancel finds nothing: the final frame cannot be followed by a
            # second, "cancelled" one.
            self._tasks.pop(request_id, None)
        if final is not None:
            await self._send(final)
        if trim and not self._tasks:
            # A load or a request freed tens of MB that glibc would keep; the last one out
            # hands it back (memory.py), after its answer has left.
            await asyncio.to_thread(release_memory)

    def _loaded(self) -> ModelInfo:
        if self._info is None:
            raise AdapterError("not_loaded", "no model is loaded; send Load first")
        return self._info

    async def _load(self, message: Load) -> Loaded:
        async with self._gate.exclusive():
            same = (message.model_dir, message.device, dict(message.options))
            if self._info is not None and same == self._loaded_as:
                # Loaded already (a preload loaded it ahead of the scheduler's own Load).
                return Loaded(id=message.id, info=self._info, load_seconds=0.0)
            if self._info is not None:
                self._info = None
                await asyncio.to_thread(self.adapter.unload)
            started = time.perf_counter()
            options = dict(message.options)
            loading = asyncio.get_running_loop().run_in_executor(
                None, self.adapter.load, Path(message.model_dir), message.device, options
            )
            try:
                info = await asyncio.shield(loading)
            except asyncio.CancelledError:
                # A loading thread cannot be stopped: let it finish, then drop what it loaded.
                with contextlib.suppress(Exception):
                    await loading
                await asyncio.to_thread(self.adapter.unload)
                raise
            seconds = time.perf_counter() - started
            self._info, self._loaded_as = info, same
            log.info(
                "loaded %s in %.2fs: %s %s",
                message.model_dir,
                seconds,
                info.device,
                ",".join(info.providers),
            )
        return Loaded(id=message.id, info=info, load_seconds=seconds)

    async def _unload(self, message: Unload) -> None:
        async with self._gate.exclusive():
            if self._info is None:
                log.info("unload %d: nothing loaded", message.id)
                return None
            self._info = None
            await asyncio.to_thread(self.adapter.unload)
            log.info("unload %d: model unloaded", message.id)
        return None  # the protocol has no success reply for Unload

    async def _transcribe(self, message: Transcribe) -> Transcript:
        key = self.adapter.batch_key(message)
        if key is not None:
            result = await self._batcher.transcribe(message, key)
        else:
            async with self._gate.shared():
                self._loaded()
                result = await self.adapter.transcribe(message)
        result.id = message.id
        return result

    async def _synthesize(self, message: Synthesize) -> SynthesisDone:
        """Stream a synthesis, taking an inference slot per chunk (a sentence), not per request.

        The gate ranks each take (vox_runner.gate): a stream's first sentence before later
        ones of running streams, a stream about to run dry before others, then the oldest
        stream first. The control plane sends a stream's next sentence while this one is
        still being made, so the runner always has the next sentence waiting.
        """
        stream = self._streams.open(message.stream)
        rank = stream.sentence()
        chunks: AsyncIterator[SynthChunk] | None = None
        seq = samples = rate = 0
        try:
            while True:
                async with self._gate.shared(rank):  # also waits out a Load in progress
                    started = time.perf_counter()
                    if chunks is None:
                        rate = self._loaded().sample_rate
                        chunks = aiter(self.adapter.synthesize(message))
                    chunk = await anext(chunks, None)
                    self._streams.worked(time.perf_counter() - started)
                if chunk is None:
                    break
                stream.sent(len(chunk.audio) / 2 / chunk.sample_rate)
                # Sent outside the slot: the next sentence starts meanwhile.
                await self._send(
                    AudioChunk(
                        id=message.id,
                        seq=seq,
                        audio=chunk.audio,
                        sample_rate=chunk.sample_rate,
                        text=chunk.text,
                    )
                )
                seq += 1
                samples += len(chunk.audio) // 2
                rate = chunk.sample_rate
                if chunk.last:
                    # The adapter knows nothing follows: end now, not after waiting a turn
                    # only to learn the stream is over.
                    break
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return SynthesisDone(id=message.id, chunks=seq, samples=samples, sample_rate=rate)

    async def _detect_speech(self, message: DetectSpeech) -> SpeechProbabilities:
        async with self._gate.shared():
            self._loaded()
            result = await self.adapter.detect_speech(message)
        result.id = message.id
        return result

    async def _list_voices(self, message: ListVoices) -> Voices:
        info = self._loaded()
        voices = await self.adapter.voices()
        return Voices(id=message.id, voices=voices, default=info.default_voice)

    async def _stop(self) -> None:
        """Cancel what is in flight and unload; the process exits right after."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        tasks = [*self._tasks.values(), *self._background]
        for task in self._tasks.values():
            task.cancel()
        if tasks:
            # Bounded: a cancelled Load waits for its loading thread, and a runner whose
            # control plane is gone must not linger for that.
            _, pending = await asyncio.wait(tasks, timeout=_STOP_GRACE)
            if pending:
                log.warning("exiting with %d request(s) still winding down", len(pending))
                return
        if self._info is not None:
            self._info = None
            try:
                await asyncio.to_thread(self.adapter.unload)
            except Exception:
                log.exception("unload failed during shutdown")


def heartbeat_interval(hello: Hello) -> float:
    """The heartbeat interval a Hello asks for (0: none), bounded below."""
    return max(hello.heartbeat_s, _MIN_HEARTBEAT) if hello.heartbeat_s > 0 else 0.0


async def handshake(
    messages: AsyncIterator[ControlMessage], send: Send, adapter: str, refusal: str | None = None
) -> int | Hello:
    """Expect Hello; answer Welcome and return the Hello, or answer Error and return an exit
    code."""
    first = await anext(messages, None)
    if first is None:
        log.info("stdin closed before the handshake")
        return EXIT_OK
    if not isinstance(first, Hello):
        raise ProtocolError(f"expected hello, got {type(first).__name__}")
    if first.protocol_version != PROTOCOL_VERSION:
        message = (
            f"runner speaks protocol {PROTOCOL_VERSION}, "
            f"control plane speaks {first.protocol_version}"
        )
        log.error("version mismatch: %s", message)
        await send(Error(id=0, code="version_mismatch", message=message))
        return EXIT_VERSION
    if refusal is not None:
        await send(Error(id=0, code="internal", message=refusal))
        return EXIT_ADAPTER
    await send(
        Welcome(
            protocol_version=PROTOCOL_VERSION,
            runner_version=vox_runner.__version__,
            adapter=adapter,
            pid=os.getpid(),
            heartbeat_s=heartbeat_interval(first),
        )
    )
    log.info("handshake done (control %s)", first.control_version or "unknown")
    return first


async def serve(
    adapter: str | type[Adapter],
    in_fd: int,
    out_fd: int,
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
    parallel: int = 1,
) -> int:
    """Run a runner on two descriptors it takes ownership of; returns the exit code."""
    writer = await FrameWriter.open(out_fd, max_frame)
    messages = read_messages(in_fd, max_frame)
    try:
        try:
            adapter_cls = load_adapter(adapter) if isinstance(adapter, str) else adapter
            instance = adapter_cls()
        except Exception as exc:
            # Still speak the protocol, so the control plane gets the reason and not just EOF.
            name = adapter if isinstance(adapter, str) else repr(adapter)
            refusal = f"adapter {name!r} is unavailable: {exc}"
            log.error("%s", refusal)
            try:
                code = await handshake(messages, writer.send, name, refusal)
                return code if isinstance(code, int) and code else EXIT_ADAPTER
            except ProtocolError:
                return EXIT_ADAPTER
        host = RunnerHost(instance, writer.send, parallel=parallel)
        return await host.run(messages)
    finally:
        await messages.aclose()
        await writer.aclose()

"""The control plane's end of one runner: spawn, handshake, multiplexed requests, reaping."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Literal, TypeVar

from vox_protocol import (
    PROTOCOL_VERSION,
    AudioChunk,
    Cancel,
    ControlMessage,
    DetectSpeech,
    Error,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Hello,
    ListVoices,
    Load,
    Loaded,
    ProtocolError,
    RunnerMessage,
    Shutdown,
    SpeechProbabilities,
    SynthesisDone,
    Synthesize,
    Transcribe,
    Transcript,
    Voices,
    Welcome,
)

from vox_control import __version__
from vox_control.runner_errors import RunnerDied, RunnerRequestError, RunnerStalled, UnexpectedReply
from vox_control.runner_spawn import spawn_runner

__all__ = ["RunnerClient", "RunnerDied", "RunnerRequestError", "RunnerStalled", "UnexpectedReply"]

log = logging.getLogger("vox.runner")

_READ_CHUNK = 1 << 20
# The reader's own bounds on collecting a death: the exit (5 s), then the last words (2 s).
_DEATH_WAIT_S = 8.0
HEARTBEAT_S = 1.0  # a busy runner says it is alive this often (see scheduler/watchdog.py)

R = TypeVar("R", Loaded, Transcript, Voices, SpeechProbabilities)
Request = Load | Transcribe | Synthesize | DetectSpeech | ListVoices


class RunnerClient:
    """Owns one runner subprocess and multiplexes concurrent requests over its pipes by id."""

    def __init__(
        self,
        name: str,
        proc: asyncio.subprocess.Process,
        *,
        max_frame: int,
        stderr_lines: int = 100,
    ) -> None:
        self.name = name
        self.proc = proc
        self.pid = proc.pid
        self.welcome: Welcome | None = None
        # A preload's head start (preload.py): when it began starting (and perhaps loading)
        # this runner and when that was done, and the seconds of it that ran before the
        # scheduler asked for the runner, which the loader adds to the model's load time.
        self.ahead_span: tuple[float, float] | None = None
        self.ahead_seconds = 0.0
        self.stderr_tail: deque[str] = deque(maxlen=stderr_lines)
        self._encoder = FrameEncoder(max_frame)
        self._decoder: FrameDecoder[RunnerMessage] = FrameDecoder(RunnerMessage, max_frame)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Queue[RunnerMessage | RunnerDied]] = {}
        self._write_lock = asyncio.Lock()
        self._welcome: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()
        self._died: RunnerDied | None = None
        self._dead = asyncio.Event()  # set the moment the runner is known gone
        self._closing = False
        self._heard = time.monotonic()  # the last frame, or when the runner became busy
        self._stalled: float | None = None  # seconds of silence the watchdog killed it after
        self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"runner-err-{name}")
        self._tasks = [
            asyncio.create_task(self._read_frames(), name=f"runner-frames-{name}"),
            self._stderr_task,
        ]

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def start(
        cls,
        name: str,
        python: Path,
        adapter: str,
        *,
        env: Mapping[str, str] | None = None,
        max_frame: int,
        timeout: float = 60.0,  # noqa: ASYNC109 - bounds the handshake only
        extra_args: Sequence[str] = (),
    ) -> RunnerClient:
        """Spawn ``python -m vox_runner`` and complete the version handshake."""
        proc = await spawn_runner(python, adapter, env, max_frame, extra_args, _READ_CHUNK)
        client = cls(name, proc, max_frame=max_frame)
        try:
            await client._send(
                Hello(
                    protocol_version=PROTOCOL_VERSION,
                    control_version=__version__,
                    heartbeat_s=HEARTBEAT_S,
                )
            )
            client.welcome = await asyncio.wait_for(asyncio.shield(client._welcome), timeout)
        except BaseException:
            await client.close(grace=0.5)
            raise
        log.info(
            "runner %s started: pid %d, adapter %s, runner %s",
            name,
            proc.pid,
            client.welcome.adapter,
            client.welcome.runner_version,
        )
        return client

    @property
    def alive(self) -> bool:
        return self._died is None and self.proc.returncode is None

    @property
    def died(self) -> RunnerDied | None:
        """How the runner died, once its reader has collected it; None while it runs."""
        return self._died

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def silent_for(self, now: float) -> float | None:
        """Seconds since the runner was last heard while busy; None when idle, or when it
        sends no heartbeats (an older runner), so silence proves nothing."""
        if not self._pending or self.welcome is None or not self.welcome.heartbeat_s:
            return None
        return max(now - self._heard, 0.0)

    def stall(self, silent_s: float) -> None:
        """Kill a runner the watchdog found silent: its requests fail with RunnerStalled."""
        self._stalled = silent_s
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()  # SIGKILL also ends a stopped (SIGSTOP) process

    async def wait_dead(self) -> RunnerDied:
        """Return once the runner has exited (or was closed); the scheduler watches this."""
        await self._dead.wait()
        assert self._died is not None
        return self._died

    async def close(self, grace: float = 5.0) -> None:
        """Ask the runner to shut down, then terminate, then kill; always reap it."""
        self._closing = True
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send(Shutdown()), 1.0)
            with contextlib.suppress(Exception):
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            for sig, wait in ((None, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
                if sig is not None and self.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.send_signal(sig)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), wait)
                if self.proc.returncode is not None:
                    break
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_all(RunnerDied(self.name, self.proc.returncode, self.stderr_tail))

    # ------------------------------------------------------------------ requests

    async def load(
        self,
        model_dir: str,
        *,
        device: str = "cpu",
        options: Mapping[str, str | int | float | bool | None] | None = None,
    ) -> Loaded:
        """Load the model in ``model_dir``; returns what the runner reports about it."""
        options = dict(options or {})
        load = Load(id=next(self._ids), model_dir=model_dir, device=device, options=options)
        return await self._request(load, Loaded)

    async def transcribe(
        self,
        audio: bytes,
        sample_rate: int,
        *,
        language: str | None = None,
        task: Literal["transcribe", "translate"] = "transcribe",
        prompt: str | None = None,
        temperature: float | None = None,
        word_timestamps: bool = False,
        vad_filter: bool = False,
        beam_size: int | None = None,
    ) -> Transcript:
        """Transcribe mono float32 PCM (raw little-endian bytes) at ``sample_rate``."""
        request = Transcribe(
            id=next(self._ids),
            audio=audio,
            sample_rate=sample_rate,
            language=language,
            task=task,
            prompt=prompt,
            temperature=temperature,
            word_timestamps=word_timestamps,
            vad_filter=vad_filter,
            beam_size=beam_size,
        )
        return await self._request(request, Transcript)

    async def vad(
        self,
        audio: bytes,
        sample_rate: int,
        *,
        stream: str,
        reset: bool = False,
        end: bool = False,
    ) -> SpeechProbabilities:
        """Speech probabilities for the next float32 PCM of ``stream`` (state in the runner)."""
        request = DetectSpeech(
            id=next(self._ids),
            audio=audio,
            sample_rate=sample_rate,
            stream=stream,
            reset=reset,
            end=end,
        )
        return await self._request(request, SpeechProbabilities)

    async def voices(self) -> Voices:
        return await self._request(ListVoices(id=next(self._ids)), Voices)

    async def synthesize(
        self,
        text: str,
        *,
        voice: str | None = None,
        speed: float = 1.0,
        language: str | None = None,
        stream: str = "",
    ) -> AsyncGenerator[AudioChunk, None]:
        """Speak ``text``: its audio chunks until SynthesisDone. ``stream`` names the client
        stream it belongs to, for the runner's ordering (protocol ``Synthesize.stream``).

        Closing the generator early (``aclose``, or cancelling the task iterating it) sends
        the runner a Cancel for this request.
        """
        request = Synthesize(
            id=next(self._ids),
            text=text,
            voice=voice,
            speed=speed,
            language=language,
            stream=stream,
        )
        # aclosing: an early close reaches _exchange now (its finally sends the Cancel).
        async with contextlib.aclosing(self._exchange(request, single=False)) as replies:
            async for reply in replies:
                if isinstance(reply, AudioChunk):
                    yield reply
                elif not isinstance(reply, SynthesisDone):
                    raise UnexpectedReply(self.name, AudioChunk, reply)

    async def _request(self, message: Request, expected: type[R]) -> R:
        """Send a request and return its single reply, which must be an ``expected``."""
        async with contextlib.aclosing(self._exchange(message, single=True)) as replies:
            async for reply in replies:
                if not isinstance(reply, expected):
                    raise UnexpectedReply(self.name, expected, reply)
                return reply
        raise RunnerDied(self.name, self.proc.returncode, self.stderr_tail)  # pragma: no cover

    async def _exchange(
        self, message: Request, *, single: bool
    ) -> AsyncGenerator[RunnerMessage, None]:
        if self._died is not None:
            raise self._died
        request_id = message.id
        queue: asyncio.Queue[RunnerMessage | RunnerDied] = asyncio.Queue()
        if not self._pending:
            self._heard = time.monotonic()  # silence counts from the moment it becomes busy
        self._pending[request_id] = queue
        finished = False
        try:
            await self._send(message)
            while True:
                reply = await queue.get()
                if isinstance(reply, RunnerDied):
                    finished = True
                    raise reply
                if isinstance(reply, Error):
                    finished = True
                    raise RunnerRequestError(reply.code, reply.message)
                if single or isinstance(reply, SynthesisDone):
                    finished = True
                    yield reply
                    return
                yield reply
        finally:
            self._pending.pop(request_id, None)
            if not finished and self.alive:
                # The caller went away (client disconnect, timeout): stop the work.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._send(Cancel(id=request_id)))

    async def _send(self, message: ControlMessage) -> None:
        frame = self._encoder.encode(message)
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise await self._death()
        async with self._write_lock:
            try:
                stdin.write(frame)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise await self._death() from exc

    async def _death(self) -> RunnerDied:
        """Why the runner is gone, once its reader has said so. A write can fail on the broken
        pipe before the reader has seen its EOF (asyncio often accepts a write to a dead
        runner, but not always): failing the request then would answer before the runner was
        known dead (``alive``, the scheduler's cue) and before its exit code and last words
        were in. Not while closing: nobody waits for that."""
        if not self._closing:
            with contextlib.suppress(asyncio.TimeoutError):
                return await asyncio.wait_for(self.wait_dead(), _DEATH_WAIT_S)
        return self._died or RunnerDied(self.name, self.proc.returncode, self.stderr_tail)

    # ------------------------------------------------------------------ readers

    async def _read_frames(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        error: str | None = None
        try:
            while chunk := await stdout.read(_READ_CHUNK):
                self._heard = time.monotonic()
                for message in self._decoder.feed(chunk):
                    self._dispatch(message)
        except ProtocolError as exc:
            error = f"protocol error from runner: {exc}"
            log.error("runner %s: %s", self.name, error)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        # EOF: the runner exited or closed its frame descriptor; collect its last words.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5.0)
        # Let the stderr reader drain the runner's last words (a traceback, an OOM note).
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 2.0)
        tail = list(self.stderr_tail)
        if error:
            tail.append(error)
        if self._stalled is not None:
            died: RunnerDied = RunnerStalled(self.name, self._stalled, tail)
        else:
            died = RunnerDied(self.name, self.proc.returncode, tail)
        if not self._closing:
            log.error("%s\n%s", died, "\n".join(f"  | {line}" for line in tail[-20:]))
        self._fail_all(died)

    def _dispatch(self, message: RunnerMessage) -> None:
        if isinstance(message, Heartbeat):
            return  # its arrival was the point (``_heard``)
        if isinstance(message, Welcome):
            if message.protocol_version != PROTOCOL_VERSION and not self._welcome.done():
                self._welcome.set_exception(
                    RunnerRequestError(
                        "version_mismatch",
                        f"runner speaks protocol {message.protocol_version}, "
                        f"control plane {PROTOCOL_VERSION}",
                    )
                )
            elif not self._welcome.done():
                self._welcome.set_result(message)
            return
        if isinstance(message, Error) and message.id == 0:
            log.error("runner %s: %s: %s", self.name, message.code, message.message)
            if not self._welcome.done():
                self._welcome.set_exception(RunnerRequestError(message.code, message.message))
            return
        queue = self._pending.get(message.id)
        if queue is not None:
            queue.put_nowait(message)
        # A reply for a request nobody waits for (cancelled) is dropped on purpose.

    async def _read_stderr(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        while line := await stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(text)
            log.debug("[%s] %s", self.name, text)

    def _fail_all(self, died: RunnerDied) -> None:
        if self._died is None:
            self._died = died
        self._dead.set()
        if not self._welcome.done():
            self._welcome.set_exception(died)
            # Nobody may await it if start() already gave up; avoid "never retrieved" noise.
            self._welcome.exception()
        for queue in self._pending.values():
            queue.put_nowait(died)

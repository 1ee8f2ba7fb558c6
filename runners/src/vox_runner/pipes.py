"""Framed pipe I/O for the runner: ControlMessage frames in, RunnerMessage frames out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncGenerator

from vox_protocol import (
    DEFAULT_MAX_FRAME,
    ControlMessage,
    FrameDecoder,
    FrameEncoder,
    RunnerMessage,
)

log = logging.getLogger("vox_runner.pipes")

_READ_SIZE = 1 << 20
_CLOSE_TIMEOUT = 5.0  # seconds to flush the last frames at exit


def _is_stream(fd: int) -> bool:
    # Pipes and sockets get asyncio transports. Anything else (a file, a tty, /dev/null,
    # which epoll refuses) is read and written in a worker thread instead.
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def read_messages(
    fd: int, max_frame: int = DEFAULT_MAX_FRAME
) -> AsyncGenerator[ControlMessage, None]:
    """Decode ControlMessage frames from ``fd`` (taking ownership of it) until EOF."""
    decoder: FrameDecoder[ControlMessage] = FrameDecoder(ControlMessage, max_frame)
    loop = asyncio.get_running_loop()
    transport: asyncio.BaseTransport | None = None
    if _is_stream(fd):
        # The limit sets how much is buffered before reading pauses: big audio frames
        # arrive in few large reads.
        reader = asyncio.StreamReader(limit=_READ_SIZE)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )

        async def read() -> bytes:
            return await reader.read(_READ_SIZE)
    else:

        async def read() -> bytes:
            return await asyncio.to_thread(os.read, fd, _READ_SIZE)

    try:
        while data := await read():
            for message in decoder.feed(data):
                yield message
        if decoder.pending:
            log.warning("stdin closed inside a frame (%d bytes dropped)", decoder.pending)
    finally:
        if transport is not None:
            transport.close()
        else:
            os.close(fd)


class _WriteFlow(asyncio.Protocol):
    """Flow control for a write pipe: ``drain`` waits while the pipe buffer is full."""

    def __init__(self) -> None:
        self._resumed: asyncio.Event = asyncio.Event()
        self._resumed.set()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pause_writing(self) -> None:
        self._resumed.clear()

    def resume_writing(self) -> None:
        self._resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._resumed.set()

    async def drain(self) -> None:
        await self._resumed.wait()


class FrameWriter:
    """Writes RunnerMessage frames to one descriptor without blocking the event loop."""

    def __init__(self, fd: int, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._fd = fd
        self._encoder = FrameEncoder(max_frame)
        self._lock = asyncio.Lock()
        self._transport: asyncio.WriteTransport | None = None
        self._flow: _WriteFlow | None = None
        self.broken = False

    @classmethod
    async def open(cls, fd: int, max_frame: int = DEFAULT_MAX_FRAME) -> FrameWriter:
        """Wrap ``fd`` (taking ownership of it)."""
        self = cls(fd, max_frame)
        if _is_stream(fd):
            loop = asyncio.get_running_loop()
            pipe = os.fdopen(fd, "wb", buffering=0)
            self._transport, self._flow = await loop.connect_write_pipe(_WriteFlow, pipe)
        return self

    async def send(self, message: RunnerMessage) -> None:
        frame = self._encoder.encode(message)  # FrameTooLarge fails the request, not the runner
        if self.broken:
            return
        try:
            if self._transport is not None and self._flow is not None:
                if self._transport.is_closing():
                    raise BrokenPipeError("the frame pipe is closed")
                # One write() per whole frame on the single-threaded loop: frames never
                # interleave, so no lock is needed on this path.
                self._transport.write(frame)
                await self._flow.drain()
            else:
                async with self._lock:
                    await asyncio.to_thread(_write_all, self._fd, frame)
        except OSError as exc:
            # The control plane is gone; stdin EOF follows and ends the runner.
            log.warning("frame pipe broken, dropping output: %s", exc)
            self.broken = True

    async def aclose(self) -> None:
        """Flush what is buffered (bounded: the peer may not be reading) and close the fd."""
        if self._transport is not None and self._flow is not None:
            self._transport.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await asyncio.shield(self._flow.lost)
        elif self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]

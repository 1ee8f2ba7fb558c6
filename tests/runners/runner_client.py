"""A minimal control-plane side of the runner protocol, for tests."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from vox_protocol import (
    PROTOCOL_VERSION,
    ControlMessage,
    FrameDecoder,
    FrameEncoder,
    Hello,
    RunnerMessage,
    Welcome,
)

T = TypeVar("T")
TIMEOUT = 20.0


class FrameClient:
    """Sends ControlMessage frames and receives RunnerMessage frames over two byte streams."""

    def __init__(
        self, read: Callable[[], Awaitable[bytes]], write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        self._read = read
        self._write = write
        self._encoder = FrameEncoder()
        self._decoder: FrameDecoder[RunnerMessage] = FrameDecoder(RunnerMessage)
        self._queue: list[RunnerMessage] = []

    async def send(self, message: ControlMessage) -> None:
        await self._write(self._encoder.encode(message))

    async def send_raw(self, data: bytes) -> None:
        await self._write(data)

    async def recv(self, limit: float = TIMEOUT) -> RunnerMessage:
        async with asyncio.timeout(limit):
            while not self._queue:
                data = await self._read()
                if not data:
                    raise EOFError("runner closed its frame stream")
                self._queue.extend(self._decoder.feed(data))
        return self._queue.pop(0)

    async def expect(self, kind: type[T], limit: float = TIMEOUT) -> T:
        message = await self.recv(limit)
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
        return message

    async def collect(self, until: Sequence[type[Any]]) -> list[RunnerMessage]:
        """Receive up to and including the first message of one of the ``until`` types."""
        out: list[RunnerMessage] = []
        while True:
            out.append(await self.recv())
            if isinstance(out[-1], tuple(until)):
                return out

    async def hello(self) -> Welcome:
        await self.send(Hello(protocol_version=PROTOCOL_VERSION, control_version="test"))
        return await self.expect(Welcome)

    async def closed(self, limit: float = TIMEOUT) -> bool:
        """True once the runner's frame stream reaches EOF with nothing more on it."""
        try:
            message = await self.recv(limit)
        except EOFError:
            return True
        raise AssertionError(f"expected EOF, got {message!r}")


class RunnerProcess:
    """``python -m vox_runner`` as a subprocess speaking frames on stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        async def write(data: bytes) -> None:
            stdin.write(data)
            await stdin.drain()

        async def read() -> bytes:
            return await stdout.read(1 << 16)

        self.client = FrameClient(read, write)

    @classmethod
    async def start(
        cls, env: dict[str, str], *args: str, python: str = sys.executable
    ) -> RunnerProcess:
        proc = await asyncio.create_subprocess_exec(
            python,
            "-X",
            "faulthandler",
            "-m",
            "vox_runner",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(proc)

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    async def wait(self, limit: float = TIMEOUT) -> tuple[int, str]:
        """Exit code and everything the runner wrote to stderr."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(limit):
            stderr = await self.proc.stderr.read()
            code = await self.proc.wait()
        return code, stderr.decode(errors="replace")

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

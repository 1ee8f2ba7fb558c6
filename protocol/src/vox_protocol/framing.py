"""Length-prefixed msgpack framing: a 4-byte big-endian length, then one encoded message."""

from __future__ import annotations

import struct
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

HEADER_SIZE = 4
_HEADER = struct.Struct(">I")
# A frame carries at most one request's audio: 256 MiB is about 70 minutes of 16 kHz float32.
DEFAULT_MAX_FRAME = 256 * 1024 * 1024


class ProtocolError(Exception):
    """A frame could not be decoded: the stream is unusable from here on."""


class FrameTooLarge(ProtocolError):
    """A frame's length exceeds the configured limit (on either side of the pipe)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class FrameEncoder:
    """Encodes messages into frames, reusing one buffer (no copy of audio payloads)."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._buffer = bytearray()
        self.max_frame = max_frame

    def encode(self, message: Any) -> bytes:
        buf = self._buffer
        # Reserve the header, encode the payload after it, then patch the length in.
        self._encoder.encode_into(message, buf, HEADER_SIZE)
        size = len(buf) - HEADER_SIZE
        if size > self.max_frame:
            del buf[:]
            raise FrameTooLarge(size, self.max_frame)
        _HEADER.pack_into(buf, 0, size)
        frame = bytes(buf)
        del buf[:]
        return frame


class FrameDecoder(Generic[T]):
    """Sans-IO decoder: feed it bytes as they arrive, get whole messages back.

    Partial reads are buffered; an oversized length is rejected before its payload is
    read, so a corrupt or hostile peer cannot make us allocate gigabytes.
    """

    def __init__(self, message_type: Any, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(message_type)
        self._buffer = bytearray()
        self._need: int | None = None
        self.max_frame = max_frame

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[T]:
        self._buffer += data
        out: list[T] = []
        buf = self._buffer
        pos = 0
        while True:
            if self._need is None:
                if len(buf) - pos < HEADER_SIZE:
                    break
                (size,) = _HEADER.unpack_from(buf, pos)
                if size > self.max_frame:
                    raise FrameTooLarge(size, self.max_frame)
                pos += HEADER_SIZE
                self._need = size
            if len(buf) - pos < self._need:
                break
            end = pos + self._need
            # Release the view before the buffer is resized below (bytearray forbids
            # resizing while a view is exported).
            with memoryview(buf) as view, view[pos:end] as payload:
                try:
                    out.append(self._decoder.decode(payload))
                except msgspec.DecodeError as exc:  # ValidationError is a subclass
                    raise ProtocolError(f"undecodable frame: {exc}") from exc
            pos = end
            self._need = None
        if pos:
            del buf[:pos]
        return out

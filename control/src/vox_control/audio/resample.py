"""The one resampler: soxr's streaming resampler, fed in bounded blocks.

Every rate change in the control plane goes through ``Resampler`` (streams: state carries
across pushes, so chunk boundaries leave no seams) or ``resample`` (one whole buffer). Input
is cut into blocks of at most ``BLOCK`` samples, so one soxr call never allocates more than
``BLOCK`` times the rate ratio, however long the input: with input rates bounded by
``audio.decode.AudioLimits`` the worst ratio is 16 (1 kHz to 16 kHz), a 4 MB float32 block.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from vox_control.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy


BLOCK = 1 << 16  # input samples per soxr call
Dtype = Literal["float32", "int16"]


class Resampler:
    """Mono ``in_rate`` -> ``out_rate`` resampling of float32 or int16 samples, streamed.

    ``blocks`` yields the output block by block (what a decoder needs to stay bounded);
    ``push`` returns it whole; ``push_pcm16`` takes and returns little-endian int16 bytes.
    Equal rates pass samples through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int, dtype: Dtype = "int16") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.dtype = dtype
        self._stream: Any = None
        if in_rate != out_rate:
            import soxr  # loaded by the first stream that changes rate, not at start

            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype=dtype, quality="HQ")

    def blocks(self, samples: npt.NDArray[Any], last: bool = False) -> Iterator[npt.NDArray[Any]]:
        """The resampled output of ``samples``, in blocks bounded by ``BLOCK`` input samples."""
        samples = np.asarray(samples, dtype=self.dtype)
        if self._stream is None:
            for start in range(0, samples.size, BLOCK):
                yield samples[start : start + BLOCK]
            return
        for start in range(0, samples.size, BLOCK):
            end = start + BLOCK
            out = self._stream.resample_chunk(samples[start:end], last=last and end >= samples.size)
            if out.size:
                yield np.asarray(out, dtype=self.dtype)
        if last and samples.size == 0:
            tail = self._stream.resample_chunk(np.zeros(0, dtype=self.dtype), last=True)
            if tail.size:
                yield np.asarray(tail, dtype=self.dtype)

    def push(self, samples: npt.NDArray[Any], last: bool = False) -> npt.NDArray[Any]:
        pieces = list(self.blocks(samples, last))
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=self.dtype)

    def push_pcm16(self, pcm: bytes, last: bool = False) -> bytes:
        """Little-endian int16 bytes in and out (an odd trailing byte is the caller's bug)."""
        if self._stream is None:
            return pcm
        return self.push(np.frombuffer(pcm, dtype="<i2"), last).astype("<i2").tobytes()


def resample(pcm: npt.NDArray[Any], in_rate: int, out_rate: int) -> npt.NDArray[np.float32]:
    """One whole float32 buffer to ``out_rate`` (a stream of one push)."""
    out = Resampler(in_rate, out_rate, "float32").push(pcm, last=True)
    return np.asarray(out, dtype=np.float32)


class ToRate:
    """PCM16 pushed at any rate, out at ``out_rate``: a stream whose source rate may change
    between pushes (a rate change flushes the old resampler's tail first, so nothing is lost)."""

    def __init__(self, out_rate: int) -> None:
        self.out_rate = out_rate
        self._resampler: Resampler | None = None

    def push(self, pcm: bytes, rate: int) -> bytes:
        head = b""
        if self._resampler is None or self._resampler.in_rate != rate:
            head = self.flush()
            self._resampler = Resampler(rate, self.out_rate)
        return head + self._resampler.push_pcm16(pcm)

    def flush(self) -> bytes:
        """The buffered tail; the next push starts a new stream."""
        if self._resampler is None:
            return b""
        tail = self._resampler.push_pcm16(b"", last=True)
        self._resampler = None
        return tail

"""Transcription of audio longer than one runner request carries, in windows cut at silence.

One ``Transcribe`` frame holds at most ``max_frame_bytes`` (256 MiB: 70 minutes of 16 kHz
float32), and holding hours of decoded audio would cost the control plane a gigabyte per
request. So an upload is decoded up to one window (``WINDOW_SECONDS``); if it ends there it
is one request as before. If not, ``transcribe_long`` goes on decoding block by block and
sends window after window: each is cut at the quietest moment of its last ``SEARCH_SECONDS``
(``sessions.voiced.quietest``), so no word is split, and the windows abut without overlap.
The windows' transcripts are joined by ``sessions.merge`` (the streaming stitch: offsets,
words, segments), which at a silent seam keeps every word once. Memory is one window plus
one decoded block, whatever the length.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vox_protocol import Segment, Transcript

from vox_control.audio.decode import AudioLimits, PcmBuffer, Source, decode_blocks
from vox_control.lazy import lazy_module
from vox_control.sessions.merge import WindowTranscript, merge_windows
from vox_control.sessions.voiced import quietest

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Blocks = Generator[npt.NDArray[np.float32], None, None]
    Pcm = npt.NDArray[np.float32]
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

WINDOW_SECONDS = 10 * 60.0
SEARCH_SECONDS = 60.0  # a window ends at the quietest moment of its last minute
_FRAME_SLACK = 64 * 1024  # a Transcribe frame's fields besides the audio


@dataclass
class LongAudio:
    """Decoded audio that did not end within one window: what is decoded so far, and the
    decoder that yields the rest (it holds the upload's file open until exhausted)."""

    head: PcmBuffer
    rest: Blocks
    rate: int
    window: int  # samples per window, at most


def window_samples(rate: int, max_frame_bytes: int) -> int:
    """Samples of one window: ``WINDOW_SECONDS``, or fewer if the runner frame is smaller."""
    return max(rate, min(int(WINDOW_SECONDS * rate), (max_frame_bytes - _FRAME_SLACK) // 4))


def open_audio(source: Source, rate: int, limits: AudioLimits, window: int) -> Pcm | LongAudio:
    """Decode ``source`` up to one window (blocking: run it in a thread); bad headers fail here."""
    blocks = decode_blocks(source, rate, limits)
    head = PcmBuffer(min(window + window // 8, rate * 60))  # grows to about one window
    if _fill(head, blocks, window + 1):
        return LongAudio(head, blocks, rate, window)
    return head.take()


def _fill(buffer: PcmBuffer, blocks: Blocks, size: int) -> bool:
    """Decode into ``buffer`` until it holds ``size`` samples; False when the audio ended."""
    while buffer.size < size:
        block = next(blocks, None)
        if block is None:
            return False
        buffer.append(block)
    return True


def cut_at(samples: Pcm, rate: int) -> int:
    """Where a window of ``samples`` ends: the quietest place of its last ``SEARCH_SECONDS``."""
    search = min(samples.size // 2, int(SEARCH_SECONDS * rate))
    start = samples.size - search
    return start + quietest(samples[start:], rate) if search else samples.size


async def transcribe_long(
    audio: LongAudio, transcribe: Callable[[Pcm], Awaitable[Transcript]]
) -> Transcript:
    """Transcribe ``audio`` window by window with ``transcribe`` and join the transcripts."""
    buffer, rate = audio.head, audio.rate
    windows: list[WindowTranscript] = []
    replies: list[Transcript] = []
    offset = 0  # samples before the buffer's first one
    more = True
    try:
        while True:
            if more:
                more = await asyncio.to_thread(_fill, buffer, audio.rest, audio.window + 1)
            end = cut_at(buffer.view(0, audio.window), rate) if more else buffer.size
            reply = await transcribe(buffer.view(0, end))
            replies.append(reply)
            windows.append(window_transcript(reply, offset / rate, (offset + end) / rate))
            offset += end
            if not more and end == buffer.size:
                break
            buffer.drop_before(end)
    finally:
        audio.rest.close()  # closes the container (and with it the upload's file handle)
    return join(replies, windows, offset / rate)


def window_transcript(reply: Transcript, start: float, end: float) -> WindowTranscript:
    """One window's reply; a reply with text but no segments becomes one segment."""
    segments = reply.segments
    if not segments and reply.text.strip():
        segments = [Segment(start=0.0, end=end - start, text=reply.text)]
    return WindowTranscript(start, end, segments)


def join(replies: list[Transcript], windows: list[WindowTranscript], duration: float) -> Transcript:
    """The windows' transcripts as one: stitched segments, the first language heard."""
    segments = merge_windows(windows)
    heard = next((r for r in replies if r.language), replies[0])
    return Transcript(
        id=replies[-1].id,
        text="".join(s.text for s in segments).strip(),
        language=heard.language,
        language_probability=heard.language_probability,
        duration=round(duration, 3),
        segments=segments,
    )

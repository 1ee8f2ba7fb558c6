"""What the CLI writes: messages on the terminal and speech files that are real files at rest."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vox_cli.client import CLIError

if TYPE_CHECKING:
    from rich.console import Console

# The output file's extension picks the format the server encodes (OpenAI's response_format).
FORMATS = {
    ".wav": "wav",
    ".mp3": "mp3",
    ".flac": "flac",
    ".ogg": "opus",
    ".opus": "opus",
    ".oga": "opus",
    ".aac": "aac",
    ".pcm": "pcm",
    ".raw": "pcm",
}


@cache
def err() -> Console:
    """The stderr console, made on first use (rich costs ~60 ms to import)."""
    from rich.console import Console

    return Console(stderr=True)


def say(message: str) -> None:
    """One line for the person on stdout, plain when piped."""
    sys.stdout.write(message + "\n")


def format_for(path: Path) -> str:
    """The response_format for an output path, or a one-line error naming the choices."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        choices = " ".join(sorted(FORMATS))
        raise CLIError(f"cannot tell the audio format of {path}: use one of {choices}")
    return FORMATS[suffix]


def write_speech(
    out: Path,
    body: dict[str, Any],
    stream: Callable[[dict[str, Any]], Iterator[bytes]],
) -> int:
    """Stream synthesized speech into ``out`` atomically; returns the bytes written.

    The server streams WAV with unknown sizes (0xFFFFFFFF, as every streaming WAV encoder
    does), so a WAV file is finished with its true RIFF and data sizes before it is renamed
    into place: `wave`, soundfile and editors then read the real duration.
    """
    fmt = format_for(out)
    if not out.parent.is_dir():
        raise CLIError(f"no such directory: {out.parent}")
    tmp = out.with_name(f".{out.name}.part")
    written = 0
    try:
        with tmp.open("wb") as fh:
            for chunk in stream({**body, "response_format": fmt}):
                fh.write(chunk)
                written += len(chunk)
        if fmt == "wav":
            fix_wav_sizes(tmp)
        tmp.replace(out)  # never leave a half-written file under the requested name
    except OSError as exc:
        raise CLIError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return written


def fix_wav_sizes(path: Path) -> None:
    """Rewrite a RIFF/WAVE file's RIFF and data chunk sizes from its length on disk."""
    total = path.stat().st_size
    with path.open("r+b") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= total:
            fh.seek(offset)
            chunk_id, size = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"data":
                fh.seek(offset + 4)
                fh.write(struct.pack("<I", min(total - offset - 8, 0xFFFFFFFF)))
                break
            offset += 8 + size + (size & 1)
        fh.seek(4)
        fh.write(struct.pack("<I", min(total - 8, 0xFFFFFFFF)))

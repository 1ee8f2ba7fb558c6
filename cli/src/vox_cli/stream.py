"""`vox stream-transcribe` and `vox stream-synthesize`: the WebSocket streaming APIs."""

from __future__ import annotations

import contextlib
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import av
from cyclopts import Parameter
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from vox_cli.client import CLIError, server_url

console = Console()
err = Console(stderr=True)

RATE = 16000
UPLOAD_SECONDS = 1.0  # audio per binary frame
TEXT_PIECE = 2000  # characters per text message

Host = Annotated[
    str | None,
    Parameter(
        help="Server address (host, host:port or URL); default $VOX_HOST or 127.0.0.1:11435."
    ),
]


def _connect(host: str | None, path: str) -> ClientConnection:
    base = server_url(host)
    url = "ws" + base.removeprefix("http") + path
    try:
        return connect(url, max_size=None, open_timeout=30)
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise CLIError(
            f"cannot open a streaming session at {url} ({exc}); start the server with "
            "`vox serve` or point --host / VOX_HOST at it"
        ) from None


def _event(ws: ClientConnection) -> dict[str, Any]:
    """The next JSON event; server errors become CLIError."""
    try:
        message = ws.recv()
    except ConnectionClosed as exc:
        raise CLIError(f"the server closed the session ({exc})") from None
    if isinstance(message, bytes):
        raise CLIError("the server sent audio where an event was expected")
    event: dict[str, Any] = json.loads(message)
    if event.get("type") == "error":
        raise CLIError(f"{event.get('message')} ({event.get('code')})")
    return event


def pcm16_chunks(path: Path, seconds: float = UPLOAD_SECONDS) -> Iterator[bytes]:
    """Decode any file PyAV reads to 16 kHz mono pcm16, in pieces of about ``seconds``."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        raise CLIError(f"cannot read {path} as audio: {exc}") from None
    with container:
        if not container.streams.audio:
            raise CLIError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        pending: list[bytes] = []
        size = 0
        target = int(seconds * RATE) * 2
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    data = out.to_ndarray().astype("<i2").tobytes()
                    pending.append(data)
                    size += len(data)
                    if size >= target:
                        yield b"".join(pending)
                        pending, size = [], 0
        except av.error.FFmpegError as exc:
            err.print(f"[yellow]warning:[/yellow] decoding stopped early: {exc}")
        for out in resampler.resample(None):
            pending.append(out.to_ndarray().astype("<i2").tobytes())
        if pending:
            yield b"".join(pending)


def _duration(path: Path) -> float | None:
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if container.duration:
                return float(container.duration) / 1_000_000
    except (av.error.FFmpegError, OSError):
        return None
    return None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.fields[done]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def stream_transcribe(
    model: str,
    file: Path,
    /,
    *,
    json_output: Annotated[bool, Parameter(help="Print the final `done` event as JSON.")] = False,
    language: str | None = None,
    word_timestamps: Annotated[
        bool,
        Parameter(
            help="Print each word with its start and end time (or, with --json-output, add them)."
        ),
    ] = False,
    chunk_ms: Annotated[int, Parameter(help="Window length in milliseconds.")] = 30_000,
    overlap_ms: Annotated[int, Parameter(help="Overlap between windows in ms.")] = 1_000,
    vad: Annotated[
        bool, Parameter(help="End windows in pauses the VAD hears (needs silero-vad:v6).")
    ] = False,
    host: Host = None,
) -> None:
    """Transcribe a long recording over the streaming API (any format; sent as pcm16)."""
    if not file.is_file():
        raise CLIError(f"no such file: {file}")
    total = _duration(file)
    config = {
        "type": "config",
        "model": model,
        "input_format": "pcm16",
        "sample_rate": RATE,
        "language": language,
        "word_timestamps": word_timestamps or json_output,
        "chunk_ms": chunk_ms,
        "overlap_ms": overlap_ms,
        "vad": vad,
        "partial": False,
    }
    result: dict[str, Any] = {}
    failure: list[BaseException] = []
    with _connect(host, "/v1/audio/transcriptions/stream") as ws, _progress() as bars:
        ws.send(json.dumps(config))
        _event(ws)  # ready (or the config's error)
        up = bars.add_task("uploading", total=total, done="")
        proc = bars.add_task("transcribing", total=total, done="")

        def receive() -> None:
            try:
                while True:
                    event = _event(ws)
                    if event["type"] == "progress":
                        seconds = event["processed_ms"] / 1000
                        bars.update(proc, completed=seconds, done=f"{seconds:.0f}s")
                    elif event["type"] == "done":
                        result.update(event)
                        return
            except BaseException as exc:
                failure.append(exc)

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        sent = 0.0
        for chunk in pcm16_chunks(file):
            if failure:
                break
            try:
                ws.send(chunk)
            except ConnectionClosed:
                break  # the receiver has the server's reason
            sent += len(chunk) / 2 / RATE
            bars.update(up, completed=sent, done=f"{sent:.0f}s")
        if not failure:
            bars.update(proc, total=sent)
            with contextlib.suppress(ConnectionClosed):  # the receiver has the reason
                ws.send(json.dumps({"type": "end"}))
        receiver.join()
    if failure:
        if isinstance(failure[0], CLIError):
            raise failure[0]
        raise CLIError(str(failure[0]))
    if json_output:
        console.print_json(data=result)
    elif word_timestamps:
        for line in word_lines(result.get("segments") or []):
            console.print(line, soft_wrap=True, highlight=False)
    else:
        console.print(result.get("text", ""), soft_wrap=True)


def word_lines(segments: list[dict[str, Any]]) -> Iterator[str]:
    """One line per word: `start --> end  word`, seconds with milliseconds."""
    for segment in segments:
        for word in segment.get("words") or []:
            yield f"{word['start']:9.3f} --> {word['end']:9.3f}  {word['word'].strip()}"


def _wav_header(rate: int, data_bytes: int) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def stream_synthesize(
    model: str,
    text_or_file: str,
    /,
    *,
    output: Annotated[Path, Parameter(name=["--output", "-o"])] = Path("output.wav"),
    voice: str | None = None,
    speed: float = 1.0,
    host: Host = None,
) -> None:
    """Speak a long text (or a text file) over the streaming API into a WAV file."""
    path = Path(text_or_file)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else text_or_file
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None
    if not text.strip():
        raise CLIError("the text is empty")
    config = {"type": "config", "model": model, "voice": voice, "speed": speed}
    tmp = output.with_name(f".{output.name}.part")
    rate = 0
    written = 0
    try:
        with (
            _connect(host, "/v1/audio/speech/stream") as ws,
            _progress() as bars,
            tmp.open("wb") as fh,
        ):
            ws.send(json.dumps(config))
            _event(ws)  # ready
            for start in range(0, len(text), TEXT_PIECE):
                ws.send(json.dumps({"type": "text", "text": text[start : start + TEXT_PIECE]}))
            ws.send(json.dumps({"type": "end"}))
            task: TaskID = bars.add_task("speaking", total=len(text), done="")
            fh.write(_wav_header(22050, 0))  # rewritten with the real rate and size below
            while True:
                try:
                    message = ws.recv()
                except ConnectionClosed as exc:
                    raise CLIError(f"the server closed the session ({exc})") from None
                if isinstance(message, bytes):
                    fh.write(message)
                    written += len(message)
                    continue
                event = json.loads(message)
                kind = event.get("type")
                if kind == "error":
                    raise CLIError(f"{event.get('message')} ({event.get('code')})")
                if kind == "audio_start":
                    rate = int(event["sample_rate"])
                elif kind == "progress":
                    bars.update(
                        task,
                        completed=event["completed_chars"],
                        total=event["total_chars"],
                        done=f"{event['chunks_completed']}/{event['chunks_total']} sentences",
                    )
                elif kind == "done":
                    break
            if not rate:
                raise CLIError("the text produced no speech")
            fh.seek(0)
            fh.write(_wav_header(rate, written))
        tmp.replace(output)  # never leave a half-written file under the requested name
    finally:
        tmp.unlink(missing_ok=True)
    seconds = written / 2 / rate
    err.print(f"wrote {output} ({seconds:.1f} s of audio at {rate} Hz)")

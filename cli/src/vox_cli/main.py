"""The `vox` command: `serve` runs the server; every other command talks to it over HTTP."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter
from rich.console import Console
from rich.table import Table

from vox_cli import models
from vox_cli.client import CLIError, VoxClient
from vox_cli.progress import PullProgress
from vox_cli.runtime import ps, stop
from vox_cli.status import status
from vox_cli.stream import stream_synthesize, stream_transcribe
from vox_cli.voices import voices

console = Console()
err = Console(stderr=True)

app = App(
    name="vox",
    help="Vox: a local runtime for speech-to-text and text-to-speech models.",
    version_flags=["--version"],
)

Host = Annotated[
    str | None,
    Parameter(
        help="Server address (host, host:port or URL); default $VOX_HOST or 127.0.0.1:11435."
    ),
]


@app.command
def serve(
    *,
    host: Annotated[str | None, Parameter(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, Parameter(help="Port (default 11435).")] = None,
    device: Annotated[str | None, Parameter(help="auto, cpu, cuda or cuda:N.")] = None,
    home: Annotated[Path | None, Parameter(help="Vox home (default $VOX_HOME or ~/.vox).")] = None,
    preload: Annotated[
        str | None, Parameter(help="Models to load at start, comma-separated.")
    ] = None,
    max_loaded: Annotated[
        int | None, Parameter(help="Most models loaded at once (0: no limit).")
    ] = None,
    keep_alive: Annotated[str | None, Parameter(help="How long idle models stay loaded.")] = None,
    memory_budget: Annotated[
        str | None, Parameter(help="Memory for models per device: 4GB, 800MB or 70%.")
    ] = None,
    max_queue: Annotated[
        int | None, Parameter(help="Requests per model that may queue (then 429).")
    ] = None,
    num_parallel: Annotated[
        int | None, Parameter(help="Requests one runner works on at once.")
    ] = None,
    queue_timeout: Annotated[
        float | None, Parameter(help="Seconds a request may wait for memory (then 503).")
    ] = None,
    drain_timeout: Annotated[
        float | None, Parameter(help="Seconds in-flight requests get on shutdown.")
    ] = None,
    pull_defaults: Annotated[
        bool | None, Parameter(help="Pull the default models when the store is empty.")
    ] = None,
    log_level: Annotated[str | None, Parameter(help="debug, info, warning, error.")] = None,
    socket: Annotated[
        str | None, Parameter(help="Also serve on this Unix socket (mode 0600).")
    ] = None,
    realtime_model: Annotated[
        str | None, Parameter(help="Model the realtime protocols serve at / (socket clients).")
    ] = None,
    api_key_file: Annotated[
        str | None, Parameter(help="File holding the bearer token (or set VOX_API_KEY).")
    ] = None,
    insecure: Annotated[
        bool | None, Parameter(help="Allow a non-loopback --host without an API key.")
    ] = None,
    allow_local_dir: Annotated[
        list[str] | None,
        Parameter(help="A root whose directories HTTP clients may register (repeatable)."),
    ] = None,
) -> None:
    """Start the Vox server. Each flag also reads VOX_*: --max-loaded from VOX_MAX_LOADED."""
    from vox_control.serve import serve as run_server
    from vox_control.settings import Settings

    settings = Settings.from_env(
        host=host,
        port=port,
        device=device,
        home=home,
        preload=tuple(p.strip() for p in preload.split(",") if p.strip()) if preload else None,
        max_loaded=max_loaded,
        keep_alive=keep_alive,
        memory_budget=memory_budget,
        max_queue=max_queue,
        num_parallel=num_parallel,
        queue_timeout=queue_timeout,
        drain_timeout=drain_timeout,
        pull_defaults=pull_defaults,
        log_level=log_level,
        socket=socket,
        realtime_model=realtime_model,
        api_key_file=api_key_file,
        insecure=insecure,
        allow_local_dir=os.pathsep.join(allow_local_dir) if allow_local_dir else None,
    )
    run_server(settings)


@app.command
def pull(
    name: str,
    *,
    adapter: Annotated[str | None, Parameter(help="Adapter for hf:// or a dir.")] = None,
    as_: Annotated[str | None, Parameter(name="--as", help="Name for hf:// or a dir.")] = None,
    type: Annotated[str | None, Parameter(help="stt or tts, if the adapter is new.")] = None,
    revision: Annotated[str | None, Parameter(help="Branch, tag or commit (hf://).")] = None,
    verify: Annotated[
        bool, Parameter(help="Hash every installed file; fetch again what does not match.")
    ] = False,
    host: Host = None,
) -> None:
    """Download a model (a name, hf://owner/repo, or ./dir with --adapter and --as).

    A directory is read by this command and sent to the server, which then holds a private
    copy; it must be re-sent (not re-pulled) to change it.
    """
    with VoxClient(host) as client, PullProgress(err) as progress:
        if models.is_source(name):
            is_dir = not name.startswith("hf://")
            name = models.register(
                client, name, as_name=as_, adapter=adapter, type=type, revision=revision
            )
            if is_dir:  # uploaded whole, sandbox included: nothing left to pull
                console.print(f"[green]pulled {name}[/green]")
                return
        body = {"model": name, "stream": True, "verify": verify}
        for event in client.stream_lines("/api/pull", body):
            if event.get("status") == "error":
                raise CLIError(event.get("error", {}).get("message", "pull failed"))
            progress.update(event)
    console.print(f"[green]pulled {name}[/green]")


@app.command(name="list")
def list_models(*, host: Host = None) -> None:
    """List the models in the store."""
    with VoxClient(host) as client:
        models = client.get("/api/list")["models"]
    table = Table("NAME", "TYPE", "ADAPTER", "SIZE", box=None)
    for m in models:
        table.add_row(m["name"], m["type"], m["adapter"], _size(m.get("size") or 0))
    console.print(table)


# What `vox run` takes for a file to transcribe, never for text to speak.
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".oga", ".webm", ".m4a", ".aac", ".mp4", ".mka"}
)


@app.command
def run(
    name: str,
    input: str,
    /,
    *,
    output: Annotated[Path | None, Parameter(name=["--output", "-o"])] = None,
    voice: str | None = None,
    speed: float = 1.0,
    language: str | None = None,
    host: Host = None,
) -> None:
    """Transcribe an audio file, or speak a text into a WAV file (-o, default output.wav)."""
    path = Path(input)
    if path.suffix.lower() in AUDIO_SUFFIXES and not path.is_file():
        # Not spoken as text: "a.wav" that is not there is a typo, not a sentence.
        raise CLIError(f"no such audio file: {path}")
    with VoxClient(host) as client:
        if path.is_file():
            with path.open("rb") as fh:
                data = {"model": name} | ({"language": language} if language else {})
                result = client.post_files("/api/transcribe", {"file": (path.name, fh)}, data)
            console.print(result["text"].strip())
            return
        out = output or Path("output.wav")
        body = {"model": name, "input": input, "speed": speed, "response_format": "wav"}
        if voice:
            body["voice"] = voice
        written = 0
        tmp = out.with_name(f".{out.name}.part")
        try:
            with tmp.open("wb") as fh:
                for chunk in client.stream_bytes("/api/synthesize", body):
                    fh.write(chunk)
                    written += len(chunk)
            tmp.replace(out)  # never leave a half-written file under the requested name
        finally:
            tmp.unlink(missing_ok=True)
    err.print(f"wrote {out} ({_size(written)})")


app.command(voices)
app.command(status)
app.command(ps)
app.command(stop)
app.command(stream_transcribe)
app.command(stream_synthesize)
app.command(models.search)
app.command(models.show)
app.command(models.rm)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # A global --host before the command (`vox --host X list`) applies to that command.
    if len(args) >= 2 and args[0] == "--host":
        args = [*args[2:3], "--host", args[1], *args[3:]]
    try:
        app(args)
    except CLIError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

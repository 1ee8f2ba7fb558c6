"""The adapter interface the runner host drives, plus helpers shared by adapters."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from vox_protocol import (
    DetectSpeech,
    ErrorCode,
    ModelInfo,
    SpeechProbabilities,
    Synthesize,
    Transcribe,
    Transcript,
    Voice,
)

T = TypeVar("T")
_log = logging.getLogger("vox_runner.adapter")

ENTRY_POINT_GROUP = "vox.adapters"


class AdapterError(Exception):
    """A request failed for a reason the client should see: the host sends ``Error(code=...)``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


class AdapterNotFound(LookupError):
    """No adapter is registered under the requested name."""


@dataclass(frozen=True, slots=True)
class SynthChunk:
    """One synthesized piece of speech: mono int16 little-endian PCM."""

    audio: bytes
    sample_rate: int
    text: str = ""  # the sentence this chunk speaks, when known
    # Nothing follows this chunk: the host ends the stream now instead of on its next turn.
    last: bool = False


class Adapter(ABC):
    """Wraps one model library. The host owns exactly one instance per runner process.

    ``load``/``unload`` are blocking and called in a worker thread. The inference methods
    are async and must never block the event loop: use ``asyncio.to_thread`` for one-shot
    work and ``iterate_in_thread`` for streaming generators.
    """

    name: ClassVar[str]
    kind: ClassVar[Literal["stt", "tts", "vad"]]

    @abstractmethod
    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        """Load the model; report what was really obtained (sample rate, providers, voices)."""

    @abstractmethod
    def unload(self) -> None:
        """Drop the model and free its memory; loading again afterwards must work."""

    async def transcribe(self, request: Transcribe) -> Transcript:
        raise AdapterError("unsupported", f"adapter {self.name!r} cannot transcribe")

    def batch_key(self, request: Transcribe) -> Hashable | None:
        """Requests with equal keys may be transcribed together by ``transcribe_batch``;
        None (the default) means this one goes alone through ``transcribe``."""
        return None

    async def transcribe_batch(self, requests: Sequence[Transcribe]) -> list[Transcript]:
        """Several requests of one ``batch_key`` in one model call, results in their order."""
        return [await self.transcribe(request) for request in requests]

    def synthesize(self, request: Synthesize) -> AsyncIterator[SynthChunk]:
        """Yield one chunk per sentence, each as soon as it is ready."""
        raise AdapterError("unsupported", f"adapter {self.name!r} cannot synthesize")

    async def detect_speech(self, request: DetectSpeech) -> SpeechProbabilities:
        """Speech probabilities per frame of one stream's next audio (a VAD's only call)."""
        raise AdapterError("unsupported", f"adapter {self.name!r} cannot detect speech")

    async def voices(self) -> list[Voice]:
        return []


_DONE: Any = object()


def with_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Each item with whether it is the last: one item of look-ahead, so the producer runs
    one step ahead (free for a list; a generator's final step is usually only its return)."""
    iterator = iter(items)
    current = next(iterator, _DONE)
    while current is not _DONE:
        following = next(iterator, _DONE)
        yield current, following is _DONE
        current = following


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncGenerator[T, None]:
    """Run each ``next(iterator)`` in a worker thread and yield the items on the event loop.

    Items are yielded one by one as the blocking producer makes them (no read-ahead, so a
    consumer that stops early wastes no inference). If the consumer is cancelled while a
    step is running, the thread cannot be interrupted; the iterator is closed once that
    step returns, so its cleanup still runs and it is never re-entered concurrently.
    """
    lock = threading.Lock()

    def step() -> T:
        with lock:
            return next(iterator, _DONE)

    def close() -> None:
        # Waits for a step still running after a cancellation, then closes the generator.
        with lock:
            closer = getattr(iterator, "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:
                    _log.exception("closing %r failed", iterator)

    loop = asyncio.get_running_loop()
    finished = False
    try:
        while True:
            item = await loop.run_in_executor(None, step)
            if item is _DONE:
                finished = True
                return
            yield item
    finally:
        if not finished:
            # RuntimeError: the executor is shutting down, the process is exiting anyway.
            with contextlib.suppress(RuntimeError):
                loop.run_in_executor(None, close)


def load_adapter(name: str) -> type[Adapter]:
    """Find an adapter class by entry-point name, or by ``module:Class`` (tests, out-of-tree)."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise AdapterNotFound(f"cannot import adapter {name!r}: {exc}") from exc
    else:
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if name not in found:
            available = ", ".join(sorted(found)) or "none installed"
            raise AdapterNotFound(f"unknown adapter {name!r}; available: {available}")
        obj = found[name].load()
    if not (isinstance(obj, type) and issubclass(obj, Adapter)):
        raise AdapterNotFound(f"{name!r} is not a vox_runner.adapter.Adapter subclass")
    return obj


# ---------------------------------------------------------------- Load.options helpers
# Options come from catalog entries and user config, so numbers may arrive as strings.


CACHE_ENV = "VOX_RUNNER_CACHE"  # set from the runner's --cache-dir


def cache_dir(kind: str) -> Path | None:
    """A folder (``<--cache-dir>/<kind>``, made on first use) where an adapter may keep what it
    derives from a model between runs, such as an optimized graph; None when the runner was
    started without a cache dir or the folder cannot be made. Only a cache: anything in it
    may be gone at the next load."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        return None
    path = Path(root) / kind
    try:
        for folder in (path.parent, path):  # both private: they hold what models hold
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return path


def parse_device(device: str) -> tuple[str, int]:
    """``cpu`` / ``auto`` / ``cuda`` / ``cuda:N`` -> (kind, device index)."""
    kind, colon, index = device.strip().lower().partition(":")
    valid = kind in ("cpu", "cuda", "auto") and (not colon or (kind == "cuda" and index.isdigit()))
    if not valid:
        raise AdapterError("bad_request", f"unsupported device {device!r} (cpu, cuda[:N], auto)")
    return kind, int(index or 0)


def option_str(options: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = options.get(key)
    return default if value is None else str(value)


def option_int(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key)
    if value is None:
        return default
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    except ValueError:
        raise AdapterError(
            "bad_request", f"option {key!r} must be an integer, not {value!r}"
        ) from None


def option_float(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key)
    if value is None:
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except ValueError:
        raise AdapterError(
            "bad_request", f"option {key!r} must be a number, not {value!r}"
        ) from None


def option_bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise AdapterError("bad_request", f"option {key!r} must be a boolean, not {value!r}")

"""A runner's resident memory: modules it never uses stay unimported, freed heap goes back.

Measured on the default models (2-core CPU, RSS of the runner process): faster-whisper
imports PyAV at import time only to decode files, which a runner never does (the control
plane sends PCM): 15 MB. glibc keeps the heap a load or a request freed in its arenas until
malloc_trim: 10 MB after the faster-whisper load, 22 MB after a transcription. And glibc gives
every thread that allocates its own arena (up to 8 per core): the executor thread running
inference and each onnxruntime/CTranslate2 worker, whose live objects then pin pages in many
arenas that malloc_trim cannot give back. Two arenas: after one transcription and two speeches
the piper runner held 241 MB instead of 312 and the whisper runner 157 instead of 171.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import sys
import types
from typing import Any

log = logging.getLogger("vox_runner.memory")


class _Deferred(types.ModuleType):
    """Stands in for a module until an attribute is used, then imports the real one."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        log.debug("importing %s on first use (%s)", self.__name__, attr)
        return getattr(importlib.import_module(self.__name__), attr)


def defer_import(name: str) -> None:
    """Make ``import name`` cheap until something uses the module (a top-level package)."""
    if name not in sys.modules:
        sys.modules[name] = _Deferred(name)


M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def _libc(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)  # glibc; musl and macOS have none
    except (AttributeError, OSError):
        return None


_TRIM = _libc("malloc_trim")


def cap_arenas(count: int = ARENAS) -> None:
    """Let at most ``count`` malloc arenas exist, unless MALLOC_ARENA_MAX already says how many.

    Called first thing, before any thread starts: threads that allocated already keep theirs.
    """
    mallopt = _libc("mallopt")
    if mallopt is not None and "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, count)


def release_memory() -> None:
    """Hand the heap that glibc holds free back to the OS (a few ms; nothing without glibc)."""
    if _TRIM is not None:
        _TRIM(0)

"""A runner's resident memory: modules it never uses stay unimported, freed heap goes back.

Measured on the default models (2-core CPU, RSS of the runner process): faster-whisper
imports PyAV at import time only to decode files, which a runner never does (the control
plane sends PCM): 15 MB. glibc keeps the heap a load or a request freed in its arenas until
malloc_trim: 10 MB after the faster-whisper load, 22 MB after a transcription.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
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


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl and macOS have none
    except (AttributeError, OSError):
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the heap that glibc holds free back to the OS (a few ms; nothing without glibc)."""
    if _TRIM is not None:
        _TRIM(0)

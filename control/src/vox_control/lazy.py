"""Modules the control plane imports on first use, not at start: numpy for one.

Every audio path uses numpy, so the modules that hold those paths (routes, sessions, audio) are
all imported while `vox serve` builds its app, and numpy's own import (50-70 ms, ~10 MB) sat in
front of the port opening. A module bound with `lazy_module` instead imports the real one on
the first attribute used: the first request that carries audio, which waits on a runner anyway.

    if TYPE_CHECKING:
        import numpy as np
    else:
        np = lazy_module("numpy")

The real module is imported normally (``sys.modules`` holds it, other libraries share it); the
stand-in keeps each attribute once looked up, so ``np.zeros`` then costs what it does on numpy.
Once the server serves, `preimport` loads them on a thread anyway: after the port, not before
it, and before a first speech request's audio would wait on numpy's import (~0.1 s of CPU).
"""

from __future__ import annotations

import importlib
import logging
import types
from typing import Any

log = logging.getLogger("vox.server")

# Every module some stand-in waits for (numpy for audio, pysbd for text): `preimport` loads them.
_BOUND: set[str] = set()


class _LazyModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)  # the next lookup finds it in this module's own dict
        return value


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on the first attribute used."""
    _BOUND.add(name)
    return _LazyModule(name)


def preimport() -> None:
    """Import every module a stand-in was made for, now (blocking: run it on a thread); a
    failure is left to the first use."""
    for name in sorted(_BOUND):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.debug("could not preimport %s: %s", name, exc)

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
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)  # the next lookup finds it in this module's own dict
        return value


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on the first attribute used."""
    return _LazyModule(name)

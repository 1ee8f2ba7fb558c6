"""What a sandbox is and how to look at one: its manifest, a probe of its interpreter, and an
identity that changes when it or its base interpreter is replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vox_sandboxes.source import PROTOCOL_NAME, RUNNER_NAME

MANIFEST_NAME = "vox-sandbox.json"
# Beside the manifest: the identity() under which the sandbox last passed probe(), so that a
# server start trusts it after a stat instead of a ~0.1 s interpreter run per sandbox.
PROBED_NAME = ".vox-probed.json"
# Bump when the layout or the install recipe changes in a way that needs every sandbox rebuilt.
SCHEMA_VERSION = 1
PROBE_TIMEOUT_S = 60.0

# Run inside a sandbox: proves its interpreter and site-packages work and reports what it holds.
_PROBE_SCRIPT = f"""
import importlib.metadata as m, json, vox_protocol
versions = {{}}
for name in ({PROTOCOL_NAME!r}, {RUNNER_NAME!r}):
    try:
        versions[name] = m.version(name)
    except m.PackageNotFoundError:
        versions[name] = None
print(json.dumps(versions))
"""


@dataclass(frozen=True)
class Sandbox:
    """One ready adapter venv; run the runner as `<python> -m vox_runner --adapter <adapter>`.

    ``adapter`` is the sandbox's directory name: the adapter's, plus ``-pkg-<key>`` for a
    third-party package. An interpreter the operator provides is a Sandbox too (``external``).
    """

    adapter: str
    path: Path
    python: Path  # <path>/bin/python
    fingerprint: str
    external: bool = False


def discard(_line: str) -> None:
    pass


def base_python() -> str:
    # The interpreter the control plane's own venv was made from, not the venv's shim.
    return getattr(sys, "_base_executable", None) or sys.executable


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def probe(python: Path) -> dict[str, str | None] | None:
    """What the sandbox holds, or None if its python does not run (base interpreter gone...)."""
    try:
        out = subprocess.run(
            [str(python), "-I", "-c", _PROBE_SCRIPT],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        data = json.loads(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return data if isinstance(data, dict) else None


def identity(sandbox: Sandbox) -> tuple[int, ...] | None:
    """Changes when the sandbox is replaced or its base interpreter is; None if python is gone."""
    try:
        manifest = (sandbox.path / MANIFEST_NAME).stat()
        interpreter = sandbox.python.stat()  # follows the symlink to the base interpreter
    except OSError:
        return None
    if not os.access(sandbox.python, os.X_OK):
        return None
    return (manifest.st_ino, manifest.st_mtime_ns, interpreter.st_ino, interpreter.st_mtime_ns)


def probed_before(sandbox: Sandbox, key: tuple[int, ...]) -> bool:
    """Whether ``sandbox`` passed probe() under this very identity (in any process)."""
    try:
        return bool(json.loads((sandbox.path / PROBED_NAME).read_text()) == list(key))
    except (OSError, ValueError):
        return False


def mark_probed(sandbox: Sandbox, key: tuple[int, ...] | None) -> None:
    """Record (or, with None, forget) that ``sandbox`` passed probe() under ``key``."""
    marker = sandbox.path / PROBED_NAME
    try:
        if key is None:
            marker.unlink(missing_ok=True)
            return
        tmp = marker.with_name(f"{PROBED_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(list(key)))
        os.replace(tmp, marker)
    except OSError:
        pass  # only a cache: the next start probes again


def python_info(python: str, cache: Path) -> dict[str, str] | None:
    """``python``'s resolved executable and version as recorded in ``cache`` while the file it
    runs is the same one (inode, size, mtime), else None: asking the interpreter itself costs a
    process start (~60 ms) on the way to a server's first runner."""
    try:
        entry = json.loads(cache.read_text()).get(python)
        if isinstance(entry, dict) and entry.get("stat") == _stat_key(python):
            return {"executable": str(entry["executable"]), "version": str(entry["version"])}
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return None


def record_python_info(python: str, info: dict[str, str], cache: Path) -> None:
    try:
        known = json.loads(cache.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    try:
        known[python] = {**info, "stat": _stat_key(python)}
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    except OSError:
        pass  # only a cache (a read-only home, say): the next start asks the interpreter


def _stat_key(python: str) -> list[int]:
    st = os.stat(python)  # follows links: a venv's python or a shim to the real binary
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]

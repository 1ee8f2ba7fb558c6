"""Wheels of the protocol and runner packages, rebuilt from the installed distributions.

When Vox runs from wheels (`uv tool install`, `pipx install`) there is no source tree to build
a sandbox's `vox-protocol` and `vox-runner` from, and they must never come from a package index
(another project could own those names there, and the versions must match the control plane's
exactly). The control environment has both installed (vox-control depends on them), so their
installed files are packed back into wheels: the same bytes the control plane runs, with a
fresh RECORD. The wheel is written once per version and content, atomically.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import tempfile
import zipfile
from pathlib import Path

# Files an installer adds to a dist-info directory; a wheel does not carry them.
_INSTALLER_FILES = frozenset({"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"})


_WHEEL = "Wheel-Version: 1.0\nGenerator: vox\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def _wheel_files(dist: importlib.metadata.Distribution) -> list[tuple[str, bytes]]:
    """(archive path, bytes) of every installed file of ``dist`` that a wheel carries."""
    files: list[tuple[str, bytes]] = []
    for entry in dist.files or []:
        parts = entry.parts
        if (parts and parts[0] in ("..", "/")) or "__pycache__" in parts:
            continue  # scripts outside site-packages, and bytecode the installer compiled
        if entry.suffix in (".pyc", ".pyo"):
            continue
        if parts[0].endswith(".dist-info") and entry.name in _INSTALLER_FILES:
            continue
        files.append((entry.as_posix(), Path(str(dist.locate_file(entry))).read_bytes()))
    return sorted(files)


def wheel_name(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def repack(dist_name: str, out_dir: Path) -> Path:
    """A wheel of the installed ``dist_name`` in ``out_dir`` (reused while its content holds)."""
    dist = importlib.metadata.distribution(dist_name)
    files = _wheel_files(dist)
    if not any(path.endswith(".dist-info/METADATA") for path, _ in files):
        raise RuntimeError(f"{dist_name} {dist.version} is installed without its METADATA")
    content = hashlib.sha256()
    for path, data in files:
        content.update(f"{path}\0{len(data)}\0".encode())
        content.update(data)
    # The content hash in the folder name: a changed install never reuses a stale wheel.
    target_dir = out_dir / content.hexdigest()[:16]
    target = target_dir / wheel_name(dist_name, dist.version)
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    info = next(p for p, _ in files if p.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in files]
    record.append(f"{info}/RECORD,,")
    fd, tmp = tempfile.mkstemp(dir=target_dir, suffix=".part")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as wheel:
            for path, data in files:
                wheel.writestr(path, data)
            if not any(path == f"{info}/WHEEL" for path, _ in files):
                wheel.writestr(f"{info}/WHEEL", _WHEEL)
                record.insert(-1, f"{info}/WHEEL,,")
            wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target

"""Interpreters that run adapters as they are (``--adapter-python``), and the check that
proves an interpreter can run an adapter: a package's sandbox, or one the operator provides."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from vox_sandboxes.errors import SandboxError
from vox_sandboxes.source import normalize_name

ENTRY_POINT_GROUP = "vox.adapters"  # vox_runner.adapter.ENTRY_POINT_GROUP; the runner may be absent
CHECK_TIMEOUT_S = 30.0

# Run by the interpreter under test: what it lacks to serve ``adapter``, as one JSON line.
_CHECK_SCRIPT = """
import json, sys
adapter, group = sys.argv[1], sys.argv[2]
report = {"missing": [], "protocol": None, "python": sys.executable}
try:
    import vox_protocol
    report["protocol"] = vox_protocol.PROTOCOL_VERSION
except Exception as exc:
    report["missing"].append(f"module vox_protocol ({type(exc).__name__}: {exc})")
try:
    from vox_runner.adapter import load_adapter
except Exception as exc:
    report["missing"].append(f"module vox_runner ({type(exc).__name__}: {exc})")
else:
    try:
        load_adapter(adapter)
    except Exception as exc:
        report["missing"].append(f"the {group} entry point {adapter!r} ({exc})")
print(json.dumps(report))
"""


def check_interpreter(python: Path, adapter: str, protocol: int, group: str) -> None:
    """Raise SandboxError naming ``python`` and what it lacks to run ``adapter``."""
    where = f"the interpreter {python} for adapter {adapter}"
    try:
        out = subprocess.run(
            [str(python), "-c", _CHECK_SCRIPT, adapter, group],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        report = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except subprocess.TimeoutExpired:
        raise SandboxError(f"{where} did not answer within {CHECK_TIMEOUT_S:.0f} s") from None
    except (OSError, ValueError, IndexError) as exc:
        raise SandboxError(f"{where} does not run: {exc}") from None
    if not isinstance(report, dict):
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:]
        raise SandboxError(f"{where} does not run: {' '.join(tail) or f'exit {out.returncode}'}")
    missing = [str(m) for m in report.get("missing") or []]
    found = report.get("protocol")
    if found is not None and found != protocol:
        missing.append(f"protocol version {protocol} (it has vox_protocol at version {found})")
    if missing:
        raise SandboxError(f"{where} lacks: {'; '.join(missing)}")


class Interpreters:
    """The operator's interpreter per adapter, each checked once per interpreter file."""

    def __init__(self, paths: Mapping[str, Path], protocol_version: int | None = None) -> None:
        self.paths = {normalize_name(k): Path(v) for k, v in paths.items()}
        self._protocol = protocol_version
        self._checked: dict[str, tuple[int, int]] = {}  # adapter -> interpreter stat checked OK

    def __contains__(self, adapter: str) -> bool:
        return adapter in self.paths

    def protocol(self) -> int:
        if self._protocol is None:
            from vox_protocol import PROTOCOL_VERSION

            self._protocol = PROTOCOL_VERSION
        return self._protocol

    def check(self, python: Path, adapter: str) -> None:
        """Raise SandboxError unless ``python`` runs ``adapter`` at this protocol version."""
        check_interpreter(python, adapter, self.protocol(), ENTRY_POINT_GROUP)

    def python(self, adapter: str, *, check: bool = True) -> Path:
        """The interpreter for ``adapter``, checked first if its file changed (without
        ``check``, a SandboxError unless that check already passed)."""
        python = self.paths[adapter]
        try:
            st = python.stat()
            key = (st.st_ino, st.st_mtime_ns)
        except OSError as exc:
            msg = f"the interpreter {python} for adapter {adapter} does not exist: {exc.strerror}"
            raise SandboxError(msg) from exc
        if self._checked.get(adapter) != key:
            if not check:
                raise SandboxError(f"the interpreter {python} for adapter {adapter} is unchecked")
            self.check(python, adapter)
            self._checked[adapter] = key
        return python

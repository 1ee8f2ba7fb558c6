"""SandboxManager: the per-adapter uv virtualenvs under <VOX_HOME>/sandboxes."""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from vox_sandboxes import uvcli
from vox_sandboxes.errors import SandboxError
from vox_sandboxes.external import Interpreters
from vox_sandboxes.package import AdapterPackage, parse_package, resolve_package
from vox_sandboxes.probe import (
    MANIFEST_NAME,
    PROBE_TIMEOUT_S,
    SCHEMA_VERSION,
    Sandbox,
    base_python,
    discard,
    identity,
    mark_probed,
    probe,
    probed_before,
    python_info,
    read_manifest,
    record_python_info,
)
from vox_sandboxes.source import RunnerSource, normalize_name

_ADAPTER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")

Log = Callable[[str], None]


@dataclass(frozen=True)
class _Job:
    """One sandbox to build: the adapter, its directory, and the package it comes from."""

    adapter: str
    dir_name: str
    package: AdapterPackage | None
    fingerprint: str


class SandboxManager:
    """Creates, finds and removes the per-adapter sandboxes under one root dir."""

    def __init__(
        self,
        root: Path,
        source: RunnerSource,
        *,
        device: str = "cpu",
        uv: str | None = None,
        python: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        interpreters: Mapping[str, Path] | None = None,
        protocol_version: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.source = source
        self.device = device
        if uv is None:
            from uv import find_uv_bin

            uv = str(find_uv_bin())
        self.uv: str = uv
        self.python = python or base_python()
        self._env = uvcli.uv_env(extra_env)
        self._python_info: dict[str, str] | None = None
        self._verified: dict[str, tuple[int, ...]] = {}  # adapter -> identity() probed OK
        # Interpreters the operator provides (--adapter-python): used as they are, never built.
        self.interpreters = Interpreters(interpreters or {}, protocol_version)

    # -- queries ---------------------------------------------------------------------------

    def fingerprint(self, adapter: str, package: str | None = None) -> str:
        """What a sandbox for `adapter` (from `package`, if given) built now is stamped with."""
        name = self._name(adapter)
        pkg = resolve_package(parse_package(package)) if package is not None else None
        # The adapter's extras need no entry of their own: they live in the runner's
        # pyproject.toml (hashed into the source fingerprint) or come with its pinned version.
        payload = {
            "schema": SCHEMA_VERSION,
            "source": self.source.fingerprint,
            "adapter": name,
            "python": self._interpreter(),
            # Only the swaps, not the raw device: a CUDA box gets the very same venv as a CPU one
            # for adapters whose stack has no GPU flavor, so switching devices rebuilds nothing.
            "gpu_swaps": [dataclasses.asdict(s) for s in uvcli.gpu_swaps(name, self.device)],
        }
        if pkg is not None:
            payload["package"] = {"spec": pkg.spec, "content": pkg.content_hash()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def get(self, adapter: str, package: str | None = None) -> Sandbox | None:
        """The ready, up-to-date sandbox for `adapter` (from `package`), or None."""
        name = self._name(adapter)
        if name in self.interpreters:
            # Only once checked: the check imports the adapter (seconds), so it runs in
            # ensure(), which callers run off the event loop, and ensure() says what is missing.
            try:
                return self._external(name, check=False)
            except SandboxError:
                return None
        try:
            fingerprint = self.fingerprint(name, package)
        except (ValueError, SandboxError):
            return None
        return self._ready(self._dir_name(name, package), fingerprint)

    def list(self) -> list[Sandbox]:
        """Every complete sandbox on disk, up to date or not (compare `fingerprint()`)."""
        if not self.root.is_dir():
            return []
        found: list[Sandbox] = []
        for child in sorted(self.root.iterdir()):
            # Dot-dirs are staging/old dirs; a dir without a manifest was never finished.
            if child.name.startswith(".") or not child.is_dir():
                continue
            manifest = read_manifest(child)
            if manifest is None or not isinstance(manifest.get("fingerprint"), str):
                continue
            found.append(self._sandbox(child.name, str(manifest["fingerprint"])))
        return found

    def manifest(self, adapter: str, package: str | None = None) -> dict[str, Any] | None:
        """The sandbox's vox-sandbox.json (versions, packages, ...), if it has one."""
        return read_manifest(self.root / self._dir_name(self._name(adapter), package))

    def known_adapters(self) -> builtins.list[str] | None:
        """The adapters the runner source offers, or None when that cannot be known up front."""
        known = self.source.adapters()
        return sorted(known) if known is not None else None

    # -- changes ---------------------------------------------------------------------------

    def ensure(self, adapter: str, log: Log | None = None, package: str | None = None) -> Sandbox:
        """The up-to-date sandbox for `adapter`, created or re-created first if needed.

        With `package` (an entry's ``adapter_package``) the sandbox holds the bare runner plus
        that package, whose ``vox.adapters`` entry point provides `adapter`.
        """
        name = self._name(adapter)
        if name in self.interpreters:
            return self._external(name)
        pkg = None
        if package is not None:
            try:
                pkg = resolve_package(parse_package(package))
            except ValueError as exc:
                raise SandboxError(str(exc)) from exc
        else:
            self._check_known(name)
        fingerprint = self.fingerprint(name, package)
        dir_name = self._dir_name(name, package)
        ready = self._ready(dir_name, fingerprint)
        if ready is not None:
            return ready
        try:
            job = _Job(name, dir_name, pkg, fingerprint)
            return self._ensure_locked(job, log if log is not None else discard)
        except OSError as exc:
            prefix = f"could not create the sandbox for {name}"
            raise SandboxError(f"{prefix}: {exc}", f"{prefix}: {exc.strerror}") from exc

    def _ensure_locked(self, job: _Job, log: Log) -> Sandbox:
        name, fingerprint = job.dir_name, job.fingerprint
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self._lock_path(name))
        try:
            lock.acquire(blocking=False)
        except Timeout:
            # Say why a pull stalls: another thread or process is building this sandbox.
            log(f"waiting for another build of the {name} sandbox to finish")
            lock.acquire()
        try:
            # Whoever held the lock before us may just have built it.
            ready = self._ready(name, fingerprint)
            if ready is not None:
                return ready
            self._clean_leftovers(name, log)
            return self._build(job, log)
        finally:
            lock.release()

    def remove(self, adapter: str, package: str | None = None) -> None:
        """Delete the sandbox for `adapter` (and any leftovers); no-op if there is none."""
        name = self._dir_name(self._name(adapter), package)
        if not self.root.is_dir():
            return
        with FileLock(self._lock_path(name)):
            self._verified.pop(name, None)
            self._clean_leftovers(name, discard)
            target = self.root / name
            if target.exists() or target.is_symlink():
                # Rename first so a half-deleted tree is never mistaken for a sandbox.
                old = self._old_path(name)
                target.rename(old)
                shutil.rmtree(old, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------

    def _name(self, adapter: str) -> str:
        name = normalize_name(adapter)
        if not _ADAPTER_RE.match(name):
            raise SandboxError(f"invalid adapter name {adapter!r}")
        return name

    @staticmethod
    def _dir_name(name: str, package: str | None) -> str:
        if package is None:
            return name
        try:
            return f"{name}-pkg-{parse_package(package).key}"
        except ValueError as exc:
            raise SandboxError(str(exc)) from exc

    def _external(self, name: str, *, check: bool = True) -> Sandbox:
        python = self.interpreters.python(name, check=check)
        return Sandbox(name, python.parent.parent, python, f"external:{python}", external=True)

    def _check_known(self, name: str) -> None:
        known = self.known_adapters()
        if known is not None and name not in known:
            raise SandboxError(self._unknown_message(name, known))

    def _unknown_message(self, name: str, known: builtins.list[str] | None) -> str:
        message = f"unknown adapter {name!r}: {self.source.runner} has no such extra"
        return f"{message} (known: {', '.join(known)})" if known is not None else message

    def _lock_path(self, name: str) -> str:
        return str(self.root / f"{name}.lock")

    def _staging_path(self, name: str) -> Path:
        return self.root / f".{name}.staging"

    def _old_path(self, name: str) -> Path:
        return self.root / f".{name}.old"

    def _sandbox(self, name: str, fingerprint: str) -> Sandbox:
        path = self.root / name
        return Sandbox(name, path, path / "bin" / "python", fingerprint)

    def _interpreter(self) -> dict[str, str]:
        cache = self.root / "python-info.json"
        if self._python_info is None:
            self._python_info = python_info(self.python, cache)
        if self._python_info is None:
            script = "import sys; print(sys.executable); print(sys.version)"
            try:
                out = subprocess.run(
                    [self.python, "-I", "-c", script],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=PROBE_TIMEOUT_S,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                msg = f"the Python for sandboxes ({self.python}) does not run: {exc}"
                raise SandboxError(msg) from exc
            executable, _, version = out.stdout.strip().partition("\n")
            self._python_info = {"executable": executable, "version": version}
            if self.root.is_dir():
                record_python_info(self.python, self._python_info, cache)
        return self._python_info

    def _ready(self, name: str, fingerprint: str) -> Sandbox | None:
        target = self.root / name
        manifest = read_manifest(target)
        if manifest is None:
            return None
        if manifest.get("fingerprint") != fingerprint or manifest.get("adapter") != name:
            return None
        sandbox = self._sandbox(name, fingerprint)
        # get() runs on the control plane's event loop, so the ~0.1 s probe runs once per
        # sandbox state, recorded beside the manifest: after that, in this process or a later
        # one, a stat of the manifest and interpreter suffices. A runner that then fails to
        # start has the record dropped (distrust()), so a sandbox broken in place is probed,
        # found stale and rebuilt on the next load.
        key = identity(sandbox)
        if key is None:
            return None
        if self._verified.get(name) != key:
            if not probed_before(sandbox, key):
                if probe(sandbox.python) is None:
                    return None
                mark_probed(sandbox, key)
            self._verified[name] = key
        return sandbox

    def distrust(self, python: Path) -> None:
        """Probe the sandbox that holds ``python`` again before it is next used: a runner
        started with it did not get as far as its handshake."""
        if python.parent.parent.parent != self.root:
            return  # an interpreter the operator provides: never probed, never rebuilt
        name = python.parent.parent.name
        self._verified.pop(name, None)
        mark_probed(self._sandbox(name, ""), None)

    def _clean_leftovers(self, name: str, log: Log) -> None:
        # Only called under the lock, so these belong to a builder that died mid-way.
        for leftover in (self._staging_path(name), self._old_path(name)):
            if leftover.exists() or leftover.is_symlink():
                log(f"removing leftover {leftover.name} from an interrupted run")
                shutil.rmtree(leftover, ignore_errors=True)

    def _build(self, job: _Job, log: Log) -> Sandbox:
        name, fingerprint = job.dir_name, job.fingerprint
        target, staging = self.root / name, self._staging_path(name)
        log(f"{'re-creating' if target.exists() else 'creating'} sandbox for {name}")
        started = time.monotonic()
        try:
            self._populate(job, staging, log)
            self._swap_in(name, staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log(f"sandbox for {name} ready in {time.monotonic() - started:.1f} s")
        sandbox = self._sandbox(name, fingerprint)
        key = identity(sandbox)  # probed in staging; the rename keeps these inodes
        if key is not None:
            self._verified[name] = key
            mark_probed(sandbox, key)
        return sandbox

    def _populate(self, job: _Job, staging: Path, log: Log) -> None:
        name, fingerprint, package = job.adapter, job.fingerprint, job.package

        def uv(cmd: builtins.list[str]) -> builtins.list[str]:
            return uvcli.run_uv(cmd, adapter=name, env=self._env, cwd=self.root, log=log)

        uv(uvcli.venv_command(self.uv, self.python, staging))
        python = staging / "bin" / "python"
        swaps = uvcli.gpu_swaps(name, self.device)
        excludes = staging / ".vox-excludes.txt" if any(s.cpu for s in swaps) else None
        if excludes is not None:
            excludes.write_text(uvcli.excludes_text(swaps))
        cmd = uvcli.install_command(self.uv, python, self.source, name, swaps, excludes, package)
        lines = uv(cmd)
        # uv only warns about a missing extra and installs the bare runner; that is no sandbox.
        if any(uvcli.MISSING_EXTRA_MARKER in line for line in lines):
            raise SandboxError(self._unknown_message(name, self.known_adapters()))
        if excludes is not None:
            excludes.unlink()
        if package is not None:
            # The package installed, but does it provide this adapter at our protocol?
            try:
                self.interpreters.check(python, name)
            except SandboxError as exc:
                msg = f"adapter package {package.spec} does not provide adapter {name}: {exc}"
                raise SandboxError(msg) from exc
        versions = probe(python)
        if versions is None:
            raise SandboxError(f"could not create the sandbox for {name}: its python does not run")
        manifest = {
            "schema": SCHEMA_VERSION,
            "adapter": job.dir_name,
            "package": package.spec if package is not None else None,
            "fingerprint": fingerprint,
            "source_fingerprint": self.source.fingerprint,
            "protocol": self.source.protocol,
            "runner": self.source.runner,
            "versions": versions,
            "device": self.device,
            "gpu_swaps": [dataclasses.asdict(s) for s in swaps],
            "python": self._interpreter(),
            "uv_version": uvcli.uv_version(self.uv),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "packages": uvcli.uv_freeze(
                self.uv, python, adapter=name, env=self._env, cwd=self.root
            ),
        }
        # Written last and inside staging: its presence is what marks a sandbox as complete.
        tmp = staging / f"{MANIFEST_NAME}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, staging / MANIFEST_NAME)

    def _swap_in(self, name: str, staging: Path, target: Path) -> None:
        old = self._old_path(name)
        had_old = target.exists() or target.is_symlink()
        if had_old:
            target.rename(old)
        try:
            staging.rename(target)
        except OSError:
            if had_old:
                old.rename(target)
            raise
        if had_old:
            shutil.rmtree(old, ignore_errors=True)

"""olah, a real HF-compatible hub, on loopback: its own venv, git-seeded repos, GET counting."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import filelock
import httpx

from tests.conftest import free_port

CACHE = Path(os.environ.get("VOX_TEST_CACHE", "~/.cache/vox-tests")).expanduser()
OLAH_VERSION = "0.5.4"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "vox",
    "GIT_AUTHOR_EMAIL": "vox@localhost",
    "GIT_COMMITTER_NAME": "vox",
    "GIT_COMMITTER_EMAIL": "vox@localhost",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class OlahUnavailable(RuntimeError):
    """olah could not be installed (no package index reachable, usually)."""


def olah_python() -> Path:
    """The python of a venv holding olah, built once under the test cache and then reused."""
    venv = CACHE / "olah-venv"
    python = venv / "bin" / "python"
    marker = venv / ".vox-complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(CACHE / "olah-venv.lock"):
        if marker.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        uv = shutil.which("uv")
        if uv is None:
            raise OlahUnavailable("uv is not on PATH, so olah's venv cannot be built")
        for cmd in (
            [uv, "venv", "-q", "--python", "3.11", str(venv)],
            [uv, "pip", "install", "-q", "--python", str(python), f"olah=={OLAH_VERSION}"],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise OlahUnavailable(f"{' '.join(cmd[:3])} failed: {done.stderr[-2000:]}")
        marker.touch()
    return python


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **_GIT_ENV},
        check=True,
    )
    return done.stdout.strip()


class OlahHub:
    """``python -m olah.server`` offline, serving git repos under ``<root>/mirrors``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mirrors = root / "mirrors"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = root / "logs"
        self.out = root / "olah.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        python = olah_python()
        (self.mirrors / "models").mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config = self.root / "olah.toml"
        config.write_text(
            "[basic]\n"
            f'host = "127.0.0.1"\nport = {self.port}\n'
            f'repos-path = "{self.root / "repos"}"\n'
            f'mirror-netloc = "127.0.0.1:{self.port}"\n'
            f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            "[accessibility]\noffline = true\n"
        )
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(python),
                    "-m",
                    "olah.server",
                    "-c",
                    str(config),
                    "--log-path",
                    str(self.log_dir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env={**os.environ, "HF_HOME": str(self.root / "hf-home")},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"olah exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                # GET / answers 500; a refs query on any repo answers once routes are up.
                httpx.get(f"{self.url}/api/models/x/y/refs", timeout=1)
                return
            time.sleep(0.2)
        raise RuntimeError(f"olah did not start:\n{self.output()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def seed(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        lfs: bool = True,
        tag: str | None = None,
        message: str = "seed",
    ) -> str:
        """Commit ``files`` into ``<mirrors>/models/<repo_id>``; returns the commit SHA.

        Files go in as LFS pointers plus ``.git/lfs/objects`` (no git-lfs needed), as the Hub
        stores weights, so downloads take the real LFS path; small text files too if ``lfs``.
        """
        repo = self.mirrors / "models" / repo_id
        if not (repo / ".git").exists():
            repo.mkdir(parents=True, exist_ok=True)
            _git(repo, "init", "-q", "-b", "main")
        for rel, content in files.items():
            dest = repo / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = content.read_bytes() if isinstance(content, Path) else content
            if not lfs:
                dest.write_bytes(data)
                continue
            oid = hashlib.sha256(data).hexdigest()
            obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
            obj.parent.mkdir(parents=True, exist_ok=True)
            if not obj.exists():
                if isinstance(content, Path):
                    shutil.copyfile(content, obj)
                else:
                    obj.write_bytes(data)
            dest.write_text(
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n"
            )
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", message)
        if tag is not None:
            _git(repo, "tag", "-f", tag)
        return _git(repo, "rev-parse", "HEAD")

    def file_gets(self, repo_id: str, path: str) -> int:
        """How many GETs of ``path`` in ``repo_id`` olah logged (HEADs and API calls excluded)."""
        pattern = re.compile(rf'"GET /{re.escape(repo_id)}/resolve/[^/ ]+/{re.escape(path)} ')
        # Access lines go to stdout and again to --log-path: count one of the two.
        return len(pattern.findall(self.output()))

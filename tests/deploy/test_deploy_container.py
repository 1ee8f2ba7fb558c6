"""The CPU image for real: containers/check.sh builds it with podman from a debootstrap base,
runs it, pulls piper:en-us-joe-medium and synthesizes inside, stops and restarts it.

Slow (about 3-5 minutes: debootstrap, image build, first pull); select it alone with
`uv run pytest tests/deploy/test_deploy_container.py`.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.deploy.conftest import ROOT, missing, require_tool

CHECK_TIMEOUT_S = 1800  # check.sh bounds every step itself; this catches a hung podman


@pytest.mark.e2e
@pytest.mark.timeout(CHECK_TIMEOUT_S + 60)
def test_cpu_image_builds_runs_pulls_and_synthesizes() -> None:
    for tool, hint in (
        ("podman", "apt-get install podman"),
        ("buildah", "apt-get install buildah"),
        ("runc", "apt-get install runc"),
        ("debootstrap", "apt-get install debootstrap"),
    ):
        require_tool(tool, hint)
    if os.geteuid() != 0:
        missing("the debootstrap base and rootful podman need root")
    out = subprocess.run(
        [str(ROOT / "containers" / "check.sh"), "--debootstrap"],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        cwd=ROOT,
    )
    # The step timings, for the CI log (pytest -rA or a failure shows them).
    timings = "\n".join(line for line in out.stderr.splitlines() if line.startswith("check: "))
    print(timings)
    assert out.returncode == 0, f"{timings}\n--- stderr tail ---\n{out.stderr[-6000:]}"
    assert "check: OK:" in out.stderr

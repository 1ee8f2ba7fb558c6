"""Runner tests: vox_runner lives only in sandboxes, so put its source (and ours) on the path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNERS_SRC = REPO / "runners" / "src"
PROTOCOL_SRC = REPO / "protocol" / "src"
HERE = Path(__file__).resolve().parent

for _path in (HERE, RUNNERS_SRC):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
if str(PROTOCOL_SRC) not in sys.path:  # after any installed copy: only a fallback
    sys.path.append(str(PROTOCOL_SRC))


@pytest.fixture
def runner_env() -> dict[str, str]:
    """Environment for a ``python -m vox_runner`` subprocess run from this source tree."""
    env = dict(os.environ)
    paths = [str(RUNNERS_SRC), str(HERE), str(PROTOCOL_SRC)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env

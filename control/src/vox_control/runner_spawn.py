"""Starting one runner process: its interpreter, arguments, environment and process group."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path


async def spawn_runner(
    python: Path,
    adapter: str,
    env: Mapping[str, str] | None,
    max_frame: int,
    extra_args: Sequence[str],
    read_chunk: int,
) -> asyncio.subprocess.Process:
    """``python -X faulthandler -m vox_runner --adapter ADAPTER`` with pipes for the frames."""
    if env is None:
        child_env = dict(os.environ)
        # The control plane's own venv must never leak into the sandbox interpreter.
        for var in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"):
            child_env.pop(var, None)
    else:
        child_env = dict(env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    proc = await asyncio.create_subprocess_exec(
        str(python),
        "-X",
        "faulthandler",
        "-m",
        "vox_runner",
        "--adapter",
        adapter,
        "--max-frame",
        str(max_frame),
        *extra_args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env,
        # Own process group: a Ctrl-C at the terminal reaches the control plane only,
        # which then shuts runners down in order. Runners exit on stdin EOF if we die.
        start_new_session=True,
        limit=read_chunk,
    )
    return proc

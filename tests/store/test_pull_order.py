"""A pull prepares the sandbox before it commits files: a failed sandbox leaves nothing listed.

The end-to-end twin (tests/reliability/test_store_integrity.py) fills a real 20 MB tmpfs;
this one runs anywhere, with a uv that fails the way uv does on a full disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from vox_control.errors import Unavailable
from vox_control.services import Puller
from vox_control.settings import Settings
from vox_control.store.disk import Store
from vox_control.store.registry import Registry
from vox_sandboxes import RunnerSource, SandboxManager

UV_LOG = "\n".join(f"  cause: failed to copy file number {i}" for i in range(40))


def full_disk_uv(tmp_path: Path) -> str:
    uv = tmp_path / "uv"
    uv.write_text(
        "#!/bin/sh\n"
        f"cat <<'LOG'\n{UV_LOG}\nLOG\n"
        "echo 'error: No space left on device (os error 28)'\n"
        "exit 2\n"
    )
    uv.chmod(0o755)
    return str(uv)


def test_a_sandbox_that_fails_for_disk_space_leaves_nothing_installed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", pypi_index="http://127.0.0.1:9/simple")
    store = Store(settings.models_dir)
    sandboxes = SandboxManager(
        settings.sandboxes_dir, RunnerSource.detect(), uv=full_disk_uv(tmp_path)
    )
    puller = Puller(settings, Registry(), store, sandboxes)
    with pytest.raises(Unavailable) as caught:
        asyncio.run(puller.pull("piper:en-us-joe-medium"))
    message = str(caught.value)
    assert message == (
        "could not create the sandbox for piper: uv exited 2 (no space left on device); "
        "the server log has its output"
    )
    assert caught.value.code == "sandbox_unavailable"
    assert "failed to copy file number 39" in (caught.value.detail or "")  # for the log only
    assert store.list() == []
    assert not store.path("piper:en-us-joe-medium").exists()  # nothing was downloaded
    assert list(store.locks_root.iterdir()) == []

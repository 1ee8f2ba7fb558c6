"""What `vox serve` and `vox` load before they do anything: no library that only some requests use.

Each import costs start-up time and resident memory for the server's whole life (the download
stack 0.1-0.3 s and ~11 MB, FFmpeg ~18 MB, pydantic ~9 MB), so those load on first use (the
first pull, the first audio decoded or encoded, --wyoming) or never (pydantic). Checked in a
fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Loaded on first use only: pulls (httpx, huggingface_hub), audio (av, soxr, numpy: the routes'
# and sessions' modules bind it through vox_control.lazy), text to speak (pysbd), --wyoming
# (wyoming), neither (pydantic, which Litestar would load for its plugins; rich, the CLI's bars),
# the first heap trim (ctypes, heap.py).
SERVER_LAZY = (
    *("httpx", "huggingface_hub", "av", "soxr", "numpy", "pysbd", "wyoming", "pydantic", "rich"),
    "ctypes",
)
# `vox` parses its arguments before `vox serve` imports the server: no server stack, no client.
CLI_LAZY = (*SERVER_LAZY, "numpy", "litestar", "uvicorn", "websockets", "vox_control.app")
# `vox serve` binds and starts the preloaded runners before the HTTP stack and the audio code
# load (on the app-building thread, beside the runners' start): the serve module and the
# services it starts them with bring in neither, nor packaging's regex grammar.
SERVE_LATER = ("uvicorn", "h11", "litestar", "numpy", "packaging", "vox_control.app")


def loaded_after(code: str, modules: tuple[str, ...], home: Path) -> list[str]:
    """Which of ``modules`` a fresh interpreter holds after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    )
    env = {**os.environ, "VOX_HOME": str(home), "VOX_PULL_DEFAULTS": "0"}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout.splitlines()[-1]))


def test_server_import_and_app_load_no_lazy_library(tmp_path: Path) -> None:
    code = (
        "import vox_control.serve\n"
        "from vox_control.app import create_app\n"
        "from vox_control.settings import Settings\n"
        "create_app(Settings.from_env())\n"
    )
    assert loaded_after(code, SERVER_LAZY, tmp_path) == []


def test_serve_starts_runners_before_the_http_stack_loads(tmp_path: Path) -> None:
    code = "import vox_control.serve\nimport vox_control.services\n"
    assert loaded_after(code, SERVE_LATER, tmp_path) == []


def test_cli_import_loads_no_server_or_client_stack(tmp_path: Path) -> None:
    assert loaded_after("import vox_cli.main", CLI_LAZY, tmp_path) == []


def test_lazy_module_imports_the_real_one_on_first_use() -> None:
    code = (
        "from vox_control.lazy import lazy_module\n"
        "import sys\n"
        "js = lazy_module('json.tool')\n"
        "assert 'json.tool' not in sys.modules\n"
        "main = js.main\n"
        "import json.tool\n"
        "assert main is json.tool.main and 'main' in vars(js)\n"
        "print('[]')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["pull_model", "pull", "DEFAULT_ENDPOINT", "RetryPolicy"])
def test_sources_package_still_exports_the_pull_stack(name: str) -> None:
    import vox_control.store.sources as sources

    assert getattr(sources, name) is not None
    with pytest.raises(AttributeError):
        _ = sources.no_such_name

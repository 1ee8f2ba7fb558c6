"""Schemathesis against the served OpenAPI document of a real `vox serve`: no 5xx, and every
response (status, content type, headers, body) as the document describes it.

Bounded for CI: a fixed number of examples per operation (VOX_SCHEMATHESIS_EXAMPLES, default
25) and a fixed seed (VOX_SCHEMATHESIS_SEED) so a run is repeatable. Speech text is capped by
schemathesis_hooks.py. Pulls of the names a fuzzer makes up fail fast (404); the two default
models are pulled first so speech and the model routes reach their success paths too.

Not asserted: Schemathesis's positive_data_acceptance. Vox refuses many schema-valid values
on meaning (a model name without a tag, bytes that are not audio, a sample rate the codec
cannot carry) with a 400 that names the field; a JSON Schema cannot say all of that.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VoxServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("schemathesis")
    vox = VoxServer(root / "home", root / "server.log")
    vox.start()
    with vox.client() as client:
        for name in ("whisper:tiny.en", "piper:en-us-joe-medium"):
            response = client.post("/api/pull", json={"model": name, "stream": False})
            assert response.status_code == 200, response.text
    yield vox
    vox.stop()


def test_served_document_matches_the_server(server: VoxServer, tmp_path: Path) -> None:
    examples = os.environ.get("VOX_SCHEMATHESIS_EXAMPLES", "25")
    seed = os.environ.get("VOX_SCHEMATHESIS_SEED", "13")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--no-color",
        "run",
        f"{server.url}/docs/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        examples,
        "--seed",
        seed,
        "--workers",
        "1",
        "--request-timeout",
        "120",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    # Run from tmp_path: the CLI keeps its state in ./.schemathesis.
    hooks = {"SCHEMATHESIS_HOOKS": "tests.reliability.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        command,
        cwd=tmp_path,
        env={**os.environ, **hooks},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected, output[-2000:]
    assert tested, output[-2000:]
    # Every documented operation ran (none was skipped for want of generatable data).
    assert int(tested.group(1)) == int(selected.group(2)) >= 18, output[-2000:]
    assert "Traceback" not in server.log(), server.log()[-4000:]


def test_docs_ui_loads_nothing_from_the_network(server: VoxServer) -> None:
    """/docs names only its own assets (from the swagger-ui-bundle-v2 package), and each is
    served; Swagger UI 5 renders OpenAPI 3.1, which Litestar writes."""
    with server.client(timeout=30) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert len(urls) >= 4, page.text
        for url in urls:
            assert url.startswith("/docs/assets/"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
        document = client.get("/docs/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    bundle = next(u for u in urls if u.endswith("swagger-ui-bundle.js"))
    with server.client(timeout=30) as client:
        assert b"SwaggerUIBundle" in client.get(bundle).content

"""HF pulls through the real server: the joe voice from a local hub, progress, kill+resume, rm."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import VoxServer, wer
from tests.faults import Fault, FaultProxy
from tests.hf.conftest import hub, joe_files  # noqa: F401  (fixtures)
from tests.hf.hub import OlahHub

pytestmark = pytest.mark.e2e

SENTENCE = "The quick brown fox jumps over the lazy dog. Models come from a hub on this machine."
JOE_REPO = "vox-test/joe-medium"


def big_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 1_000_000]


def pull_events(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    with client.stream("POST", "/api/pull", json={"model": name}) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


@pytest.fixture(scope="module")
def joe_repo(hub: OlahHub, joe_files: dict[str, Path]) -> str:  # noqa: F811
    return hub.seed(JOE_REPO, joe_files)


@pytest.fixture(scope="module")
def hf_server(
    pulled: VoxServer,
    hub: OlahHub,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[VoxServer]:
    """A second server on the suite's home (models, sandboxes) pointed at the local hub."""
    root = tmp_path_factory.mktemp("hf-server")
    env = {"VOX_HF_ENDPOINT": hub.url, "HF_HOME": str(root / "hf-home"), "VOX_PULL_DEFAULTS": "0"}
    server = VoxServer(pulled.home, root / "server.log", env=env)
    server.start()
    yield server
    server.stop()


def test_joe_from_the_hub_speaks_and_is_understood(hf_server: VoxServer, joe_repo: str) -> None:
    name = "piper:joe-hub"
    with hf_server.client() as client:
        reg = client.post(
            "/api/register",
            json={"name": name, "source": f"hf://{JOE_REPO}", "adapter": "piper"},
        )
        assert reg.status_code == 200, reg.text
        events = pull_events(client, name)
        assert events[-1] == {"status": "success", "model": name}, events[-3:]
        # The sandbox is prepared before any file is fetched (a failed one leaves nothing).
        assert [e["status"] for e in events[:2]] == ["preparing the piper sandbox", "resolving"]
        progress = [e for e in events if e["status"] == "downloading"]
        per_file: dict[str, list[int]] = {}
        for e in progress:
            per_file.setdefault(e["file"], []).append(e["completed"])
        assert set(per_file) == {
            "en_US-joe-medium.onnx",
            "en_US-joe-medium.onnx.json",
            "MODEL_CARD",
        }
        for file, done in per_file.items():
            assert done == sorted(done), file  # monotonic
        assert per_file["en_US-joe-medium.onnx"][-1] == 63201294
        assert next(e for e in progress if e["file"] == "MODEL_CARD")["total"] == 280
        # One copy: the store has it, huggingface_hub's cache has nothing.
        assert big_files(Path(hf_server._env["HF_HOME"])) == []

        shown = client.post("/api/show", json={"model": name}).json()
        assert shown["installed"]
        assert shown["revision"] == joe_repo
        assert shown["source"]["repo"] == JOE_REPO
        assert shown["origin"] == "user"

        speech = client.post("/api/synthesize", json={"model": name, "input": SENTENCE})
        assert speech.status_code == 200, speech.text
        files = {"file": ("joe.wav", speech.content, "audio/wav")}
        text = client.post(
            "/api/transcribe", files=files, data={"model": "whisper:tiny.en"}
        ).json()["text"]
        assert wer(SENTENCE, text) <= 0.10, text

        deleted = client.request("DELETE", "/api/delete", json={"model": name})
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["unloaded"] is True
        assert name not in {m["name"] for m in client.get("/api/list").json()["models"]}
        again = client.request("DELETE", "/api/delete", json={"model": name})
        assert again.status_code == 404


def test_alias_pull_and_search(hf_server: VoxServer) -> None:
    with hf_server.client() as client:
        events = pull_events(client, "piper:joe")  # alias of the installed joe voice
        assert events[-1] == {"status": "success", "model": "piper:en-us-joe-medium"}
        found = client.get("/api/search", params={"q": "joe", "type": "tts"}).json()["models"]
        assert "piper:en-us-joe-medium" in {m["name"] for m in found}
        assert client.get("/api/search", params={"type": "xx"}).status_code == 400
        bad = client.post("/api/show", json={"model": "../etc:passwd"})
        assert bad.status_code == 400
        assert client.post("/api/pull", json={"model": "a:..", "stream": False}).status_code == 400


def test_cli_pull_hf_show_rm(hf_server: VoxServer, joe_repo: str) -> None:
    env = {**os.environ, "VOX_HOST": hf_server.url}

    def vox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vox_cli.main", *args],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip

    done = vox("pull", f"hf://{JOE_REPO}", "--adapter", "piper", "--as", "piper:joe-cli")
    assert done.returncode == 0, done.stderr
    assert "pulled piper:joe-cli" in done.stdout
    shown = vox("show", "piper:joe-cli")
    assert shown.returncode == 0, shown.stderr
    assert f"hf://{JOE_REPO}@main" in shown.stdout, shown.stdout
    listed = vox("list")
    assert "piper:joe-cli" in listed.stdout
    assert "piper:joe-cli" in vox("search", "joe-cli").stdout
    assert vox("rm", "piper:joe-cli").returncode == 0
    assert "piper:joe-cli" not in vox("list").stdout
    missing = vox("pull", f"hf://{JOE_REPO}")
    assert missing.returncode == 1
    assert "--adapter" in missing.stderr


def test_killed_at_90_percent_resumes_only_the_rest(
    hub: OlahHub,  # noqa: F811
    joe_repo: str,
    tmp_path: Path,
) -> None:
    """SIGKILL at 90% of the weights, restart: nothing listed, then only the rest is fetched.

    The hub is behind a fault proxy (olah itself ignores Range) that pauses the weights at
    90% for the kill, and drops the resumed download once, so the stream shows a retry.
    """
    onnx = f"/{JOE_REPO}/resolve/{joe_repo}/en_US-joe-medium.onnx"
    size = 63201294
    at = size * 9 // 10
    proxy = FaultProxy(hub.url, lambda path: "/resolve/" in path)
    proxy.warm(onnx)
    pause = Fault("pause", after=at, match=r"\.onnx$")
    proxy.add(pause)
    env = {"VOX_HF_ENDPOINT": proxy.url, "HF_HOME": str(tmp_path / "hf"), "VOX_PULL_DEFAULTS": "0"}
    server = VoxServer(tmp_path / "home", tmp_path / "server.log", env=env)
    server.start()
    name = "piper:joe-kill"
    body = {"name": name, "source": f"hf://{JOE_REPO}", "adapter": "piper"}
    staging = tmp_path / "home" / "models" / ".staging"
    partial = staging / "piper__joe-kill.partial"
    try:
        with server.client() as client:
            assert client.post("/api/register", json=body).status_code == 200
            with client.stream("POST", "/api/pull", json={"model": name}) as response:
                deadline = time.monotonic() + 300
                while not any(p.stat().st_size == at for p in big_files(staging)):
                    assert time.monotonic() < deadline, "the weights never reached 90%"
                    assert not (tmp_path / "home" / "models" / "piper").exists(), "not paused"
                    time.sleep(0.05)
                assert server.proc is not None
                server.proc.kill()  # SIGKILL: no cleanup of any kind
                server.proc.wait()
                pause.release.set()
                with contextlib.suppress(httpx.HTTPError):
                    response.read()
        proxy.add(Fault("drop", after=1 << 20, match=r"\.onnx$"))
        server.start()
        with server.client() as client:
            assert client.get("/api/list").json()["models"] == []
            # Stale staging went at start; the model's partial download stayed.
            assert [p.name for p in staging.iterdir() if p.suffix != ".lock"] == [partial.name]
            events = pull_events(client, name)
            assert events[-1]["status"] == "success", events[-3:]
            assert [m["name"] for m in client.get("/api/list").json()["models"]] == [name]
        resumed = [e for e in events if e["status"] == "resuming"]
        assert resumed == [
            {"status": "resuming", "file": "en_US-joe-medium.onnx", "completed": at, "total": size}
        ]
        assert any(e["status"].startswith("retrying in ") for e in events), events
        after_kill = proxy.sent_for(r"\.onnx$")[1:]
        assert after_kill[0].start == at
        assert sum(r.sent for r in after_kill) <= size - at + (1 << 20)  # + one chunk, at most
        assert not partial.exists()
    finally:
        server.stop()
        proxy.close()

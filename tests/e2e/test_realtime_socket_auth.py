"""End to end: bearer auth on HTTP, WS and the Unix socket; socket rules; busy; `vox status`."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import VoxServer, free_port
from tests.realtime.peers import drive
from tests.streaming.helpers import SCRIPT

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-realtime-token"


@pytest.fixture(scope="module")
def secured(pulled: VoxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    """A second server on the same home: a token from a file, a Unix socket, no queue."""
    root = tmp_path_factory.mktemp("rt")
    key = root / "key"
    key.write_text(TOKEN + "\n")
    key.chmod(0o600)
    server = VoxServer(
        pulled.home,
        root / "server.log",
        env={
            "VOX_API_KEY_FILE": str(key),
            "VOX_SOCKET": str(root / "vox.sock"),
            "VOX_MAX_QUEUE": "0",  # one request per model: a second concurrent commit is busy
            "VOX_PULL_DEFAULTS": "false",
        },
    )
    server.start()
    server.socket = root / "vox.sock"  # type: ignore[attr-defined]
    yield server
    server.stop()
    assert not (root / "vox.sock").exists()  # removed on a clean stop


def sock(server: VoxServer) -> str:
    return str(server.socket)  # type: ignore[attr-defined]


def tts_uri(server: VoxServer) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/realtime/tts?model=piper:en-us-joe-medium"


def test_socket_mode_is_0600(secured: VoxServer) -> None:
    mode = os.stat(sock(secured)).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize("over", ["tcp", "socket"])
def test_http_auth(secured: VoxServer, over: str) -> None:
    if over == "tcp":
        client = httpx.Client(base_url=secured.url, timeout=30)
    else:
        transport = httpx.HTTPTransport(uds=sock(secured))
        client = httpx.Client(base_url="http://vox", transport=transport, timeout=30)
    with client:
        assert client.get("/api/health").status_code == 200  # left open for probes
        missing = client.get("/api/list")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"]["type"] == "authentication_error"
        wrong = client.get("/api/list", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get("/api/list", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        assert {m["name"] for m in right.json()["models"]} >= {"piper:en-us-joe-medium"}


@pytest.mark.parametrize("over", ["tcp", "socket"])
def test_ws_auth_before_the_handshake(secured: VoxServer, over: str) -> None:
    where = ["--uri", tts_uri(secured)] if over == "tcp" else ["--socket", sock(secured)]
    assert drive("status", *where)["http_status"] == 401
    assert drive("status", *where, "--token", "wrong")["http_status"] == 401
    result = drive("status", *where, "--token", TOKEN)
    assert result["hello"]["audio"]["rate"] == 22050
    assert result["status"]["type"] == "server.status"


def test_peer_synthesizes_and_cancels_over_the_socket(secured: VoxServer, tmp_path: Path) -> None:
    out = tmp_path / "a.pcm"
    args = ["--socket", sock(secured), "--token", TOKEN]
    result = drive("tts", *args, "--text", SCRIPT[0], "--out", str(out))
    # `/` on the socket serves the default TTS model: what the peers' socket clients reach.
    assert result["hello"]["backend"]["model"] == "piper:en-us-joe-medium"
    assert result["hello"]["audio"]["rate"] == 22050
    (response,) = result["responses"]
    assert response["seqs"] == list(range(len(response["seqs"])))
    assert response["types"][-1] == "response.audio.done"
    assert abs(out.stat().st_size / 2 / 22.05 - response["last"]["duration_ms"]) < 5
    cancel = drive("cancel", *args, "--text", " ".join(SCRIPT[:12]))
    assert cancel["ack"]["type"] == "response.cancelled"
    assert [e["type"] for e in cancel["after"]] == ["server.status"]


def test_full_queue_is_busy_with_retry_after(secured: VoxServer) -> None:
    result = drive("busy", "--uri", tts_uri(secured), "--token", TOKEN,
                   "--text", " ".join(SCRIPT[:10]))  # fmt: skip
    other = result["other"]
    assert other["type"] == "error"
    assert other["error"]["code"] == "busy"
    assert other["retry_after_ms"] >= 1000  # the scheduler's Retry-After, in ms
    assert other["previous_event_id"] == "second"


def vox(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "vox_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_vox_status(secured: VoxServer) -> None:
    key = {"VOX_API_KEY": TOKEN}
    code, out = vox("status", "--socket", sock(secured), "--json", env=key)
    assert code == 0, out
    data = json.loads(out)
    assert data["hello"]["audio"]["rate"] == 22050
    assert data["status"]["queue_depth"] == 0
    assert data["status"]["vox"]["uptime_seconds"] > 0
    code, out = vox("status", "--host", f"127.0.0.1:{secured.port}", env=key)
    assert code == 0, out
    assert "22050 Hz" in out
    assert "piper:en-us-joe-medium" in out
    code, out = vox("status", "--host", f"127.0.0.1:{secured.port}", "--stt", env=key)
    assert code == 0, out
    assert "16000 Hz" in out
    code, out = vox("status", "--socket", sock(secured), env={"VOX_API_KEY": ""})
    assert code != 0
    assert "401" in out
    code, out = vox("status", "--host", f"127.0.0.1:{free_port()}")
    assert code != 0
    assert "nothing answers" in out


def serve_fails(home: Path, *args: str) -> str:
    code, out = vox("serve", "--port", str(free_port()), *args, env={"VOX_HOME": str(home)})
    assert code != 0, out
    return out


def test_socket_path_rules(secured: VoxServer, tmp_path: Path) -> None:
    home = secured.home
    assert "already listening" in serve_fails(home, "--socket", sock(secured))
    regular = tmp_path / "file.sock"
    regular.write_text("data")
    assert "is not a socket" in serve_fails(home, "--socket", str(regular))
    assert regular.read_text() == "data"  # never clobbered
    # A stale socket (nobody listens; a crash leaves one) is cleared and the server starts.
    stale = tmp_path / "stale.sock"
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(stale))
    left.close()
    server = VoxServer(home, tmp_path / "stale.log", env={"VOX_SOCKET": str(stale)})
    server.start()
    try:
        transport = httpx.HTTPTransport(uds=str(stale))
        with httpx.Client(base_url="http://vox", transport=transport) as client:
            assert client.get("/api/health").status_code == 200
    finally:
        server.stop()
    assert "removed a stale socket" in server.log()


def test_non_loopback_without_a_token_refuses(tmp_path: Path) -> None:
    out = serve_fails(tmp_path / "home", "--host", "0.0.0.0")
    assert "without an API key" in out
    assert "--insecure" in out

"""Through a real `vox serve`: pages on other sites cannot drive the server (Origin, Host, CORS).

A foreign web page can send a cross-site POST (text/plain and form bodies need no preflight) and
open a WebSocket to loopback; DNS rebinding reaches the server under the attacker's name. Each is
refused here, while the same requests from curl-like clients (no Origin) keep working.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect, unix_connect
from websockets.typing import Origin

from tests.conftest import VoxServer

pytestmark = pytest.mark.e2e

EVIL = "https://evil.example"
APP = "https://app.example.com"  # configured with VOX_CORS_ORIGINS
TOKEN = "browser-test-token"
WS_ROUTES = [
    "/v1/audio/transcriptions/stream",
    "/v1/audio/speech/stream",
    "/v1/realtime/tts",
    "/v1/realtime/stt",
    "/",
]
FORM = "application/x-www-form-urlencoded"  # what `curl -d` sends


def register_body(name: str) -> str:
    return json.dumps({"name": name, "source": "hf://someone/tiny", "adapter": "faster-whisper"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("browser")
    env = {
        "VOX_PULL_DEFAULTS": "false",
        "VOX_CORS_ORIGINS": f"{APP},https://*.tools.example",
        "VOX_ALLOWED_HOSTS": "vox.lan,.corp.example",
    }
    vox = VoxServer(root / "home", root / "server.log", env=env)
    vox.start()
    yield vox
    vox.stop()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VoxServer, str]]:
    """A token and a Unix socket: preflights need no token, the socket has no Host to check."""
    root = tmp_path_factory.mktemp("browser-secured")
    env = {
        "VOX_PULL_DEFAULTS": "false",
        "VOX_API_KEY": TOKEN,
        "VOX_SOCKET": str(root / "vox.sock"),
    }
    vox = VoxServer(root / "home", root / "server.log", env=env)
    vox.start()
    yield vox, env["VOX_SOCKET"]
    vox.stop()


def names(client: httpx.Client) -> set[str]:
    return {m["name"] for m in client.get("/api/search").json()["models"]}


@pytest.mark.parametrize("content_type", ["text/plain", FORM])
def test_cross_site_post_is_refused_and_curl_works(server: VoxServer, content_type: str) -> None:
    name = f"mine:{content_type.split('/')[0]}"
    headers = {"Content-Type": content_type}
    with server.client(timeout=30) as client:
        refused = client.post(
            "/api/register", content=register_body(name), headers={**headers, "Origin": EVIL}
        )
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert refused.json()["request_id"] == refused.headers["x-request-id"]
        assert error["code"] == "origin_not_allowed"
        assert "--cors-origins" in error["message"]
        assert name not in names(client)  # nothing was done
        # The same body without an Origin, as curl sends it, is served.
        served = client.post("/api/register", content=register_body(name), headers=headers)
        assert served.status_code == 200, served.text
        assert name in names(client)


@pytest.mark.parametrize("path", ["/api/pull", "/api/load", "/api/delete", "/v1/audio/speech"])
def test_every_spending_route_refuses_a_foreign_origin(server: VoxServer, path: str) -> None:
    method = "DELETE" if path == "/api/delete" else "POST"
    body = json.dumps({"model": "piper:en-us-joe-medium", "input": "hi"})
    with server.client(timeout=30) as client:
        response = client.request(method, path, content=body, headers={"Origin": EVIL})
        assert response.status_code == 403, response.text
        assert client.get("/api/ps").json()["loading"] is None


def test_reads_with_a_foreign_origin_get_no_cors_headers(server: VoxServer) -> None:
    with server.client(timeout=30) as client:
        response = client.get("/api/list", headers={"Origin": EVIL})
    assert response.status_code == 200  # a browser hides the answer without the header below
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3000",
        "http://127.0.0.1:8080",
        "http://[::1]:5173",
        "https://localhost",
        "http://0.0.0.0:9000",
        APP,
        "https://notes.tools.example",
    ],
)
def test_loopback_and_configured_origins_are_allowed(server: VoxServer, origin: str) -> None:
    with server.client(timeout=30) as client:
        response = client.post("/api/show", json={"model": "nope:x"}, headers={"Origin": origin})
        assert response.status_code == 404, response.text  # reached the route
        assert response.headers["access-control-allow-origin"] == origin
        assert "Retry-After" in response.headers["access-control-expose-headers"]


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example:80",
        "https://app.example.com.evil.example",
        "null",  # sandboxed iframes and file:// pages
        "http://127.0.0.2:8080",
    ],
)
def test_lookalike_origins_are_refused(server: VoxServer, origin: str) -> None:
    with server.client(timeout=30) as client:
        response = client.post("/api/show", json={"model": "nope:x"}, headers={"Origin": origin})
    assert response.status_code == 403, response.text


def test_same_origin_pages_of_this_server_are_allowed(server: VoxServer) -> None:
    # Reached by a LAN address (an IP literal Host), a page from this very server may post.
    me = f"192.168.7.7:{server.port}"
    with server.client(timeout=30) as client:
        own = client.post(
            "/api/show",
            json={"model": "nope:x"},
            headers={"Host": me, "Origin": f"http://{me}"},
        )
        assert own.status_code == 404, own.text
        other_port = client.post(
            "/api/show",
            json={"model": "nope:x"},
            headers={"Host": me, "Origin": "http://192.168.7.7:9"},
        )
        assert other_port.status_code == 403


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 403),  # a rebinding page's own name
        ("attacker.localhost.evil.example", 403),
        ("localhost", 200),
        ("app.localhost", 200),
        ("127.0.0.1", 200),
        ("[::1]", 200),
        ("10.1.2.3", 200),  # an IP literal: no DNS, nothing to rebind
        ("vox", 200),  # no dot: a container service name, never a public DNS name
        ("vox.lan", 200),  # VOX_ALLOWED_HOSTS
        ("build.corp.example", 200),
        ("corp.example", 200),
        (socket.gethostname(), 200),  # this machine's own name
    ],
)
def test_host_header(server: VoxServer, host: str, status: int) -> None:
    with server.client(timeout=30) as client:
        for value in (host, f"{host}:{server.port}"):
            response = client.get("/api/list", headers={"Host": value})
            assert response.status_code == status, (value, response.text)
            if status == 403:
                assert response.json()["error"]["code"] == "host_not_allowed"
                assert "--allowed-hosts" in response.json()["error"]["message"]


def ws_status(port: int, path: str, origin: str | None = None, host: str = "127.0.0.1") -> int:
    """The handshake's answer: 101, or the refusal's status. ``host`` is only the name asked
    for (the Host header); the socket always goes to this server on loopback."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    uri = f"ws://{host}:{port}{path}"
    try:
        with connect(uri, sock=sock, origin=Origin(origin) if origin else None, proxy=None):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code
    finally:
        sock.close()


@pytest.mark.parametrize("path", WS_ROUTES)
def test_websocket_handshakes_check_origin_and_host(server: VoxServer, path: str) -> None:
    port = server.port
    assert ws_status(port, path, origin=EVIL) == 403
    assert ws_status(port, path, origin="null") == 403
    assert ws_status(port, path, host="evil.example") == 403
    assert ws_status(port, path) == 101  # no Origin: a program, not a page
    assert ws_status(port, path, origin=f"http://localhost:{port}") == 101
    assert ws_status(port, path, origin=APP) == 101


def test_cors_preflights(server: VoxServer) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    with server.client(timeout=30) as client:
        for origin in ("http://localhost:5173", APP):
            ok = client.options("/api/transcribe", headers={**ask, "Origin": origin})
            assert ok.status_code == 204, ok.text
            assert ok.headers["access-control-allow-origin"] == origin
            assert "POST" in ok.headers["access-control-allow-methods"]
            assert "content-type" in ok.headers["access-control-allow-headers"].lower()
        foreign = client.options("/api/transcribe", headers={**ask, "Origin": EVIL})
        assert "access-control-allow-origin" not in foreign.headers
        assert foreign.status_code >= 400


def test_preflight_needs_no_token_and_a_token_does_not_excuse_origin(
    secured: tuple[VoxServer, str],
) -> None:
    ask = {"Access-Control-Request-Method": "POST", "Origin": "http://localhost:3000"}
    with secured[0].client(timeout=30) as client:
        preflight = client.options("/api/pull", headers=ask)
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert client.post("/api/pull", json={"model": "x:y"}).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        crafted = client.post("/api/pull", json={"model": "x:y"}, headers={**auth, "Origin": EVIL})
        assert crafted.status_code == 403


def test_unix_socket_skips_host_but_checks_origin(secured: tuple[VoxServer, str]) -> None:
    path = secured[1]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    transport = httpx.HTTPTransport(uds=path)
    with httpx.Client(base_url="http://any-name.example", transport=transport, timeout=30) as c:
        assert c.get("/api/list", headers=auth).status_code == 200  # no Host to check
        crafted = c.post("/api/show", json={"model": "x:y"}, headers={**auth, "Origin": EVIL})
        assert crafted.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        unix_connect(path, "ws://vox/v1/realtime/tts", origin=Origin(EVIL), additional_headers=auth)
    assert refused.value.response.status_code == 403

"""The playground in a real browser: Debian's chromium driven by Playwright, a keyed server.

The server starts with no model (VOX_PULL_DEFAULTS=0): the page's own pull brings
piper:en-us-joe-medium, and whisper:tiny.en is pulled through the API. Every test talks to it
with VOX_API_KEY set, so each request and socket the page makes proves it carries the token.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile

from tests.conftest import VoxServer
from tests.deploy.conftest import missing

TOKEN = "playground-test-key"
TEXT = "The quick brown fox jumps over the lazy dog. Vox speaks and listens on this machine."
STT = "whisper:tiny.en"
TTS = "piper:en-us-joe-medium"


def chromium_path() -> str:
    """Debian's chromium (never Playwright's own download: `playwright install` is not used)."""
    found = shutil.which("chromium")
    if found is None:
        missing("chromium is not installed (apt-get install -y chromium)")
        raise AssertionError("unreachable")
    return found


def launch_args(*extra: str) -> list[str]:
    # Root needs --no-sandbox; the autoplay flag lets Web Audio start without a real gesture.
    return ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", *extra]


@pytest.fixture(scope="package")
def playwright() -> Iterator[Any]:
    chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (uv sync: it is in the dev group)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Any) -> Iterator[Any]:
    launched = playwright.chromium.launch(executable_path=chromium_path(), args=launch_args())
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    root = tmp_path_factory.mktemp("web")
    env = {"VOX_API_KEY": TOKEN, "VOX_PULL_DEFAULTS": "0"}
    server = VoxServer(root / "home", root / "server.log", env=env)
    server.start()
    yield server
    server.stop()


def api(server: VoxServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, timeout=600, headers={"Authorization": f"Bearer {TOKEN}"}
    )


def pull(server: VoxServer, name: str) -> None:
    """Pull through /api/pull (at once when the model is already installed)."""
    with api(server) as client, client.stream("POST", "/api/pull", json={"model": name}) as r:
        assert r.status_code == 200, r.read()
        events = [json.loads(line) for line in r.iter_lines() if line.strip()]
    assert events[-1]["status"] == "success", events[-5:]


@pytest.fixture(scope="package")
def stt_server(web_server: VoxServer) -> VoxServer:
    pull(web_server, STT)
    return web_server


@pytest.fixture(scope="package")
def both_pulled(stt_server: VoxServer) -> VoxServer:
    pull(stt_server, TTS)
    return stt_server


@pytest.fixture(scope="package")
def speech_wav(both_pulled: VoxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TEXT spoken by the server's TTS, as a 48 kHz WAV (a rate Chromium's fake mic plays)."""
    body = {"model": TTS, "input": TEXT, "sample_rate": 48000}
    with api(both_pulled) as client:
        response = client.post("/api/synthesize", json=body)
    assert response.status_code == 200, response.text
    # Rewritten with real sizes: the streamed WAV's 0xFFFFFFFF would stump Chromium's reader.
    samples, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="package")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where panel screenshots go: VOX_PLAYGROUND_SHOTS (docs/playground to refresh the
    committed ones), else a temporary folder."""
    chosen = os.environ.get("VOX_PLAYGROUND_SHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_page(browser: Any, url: str, token: str = TOKEN, **context: Any) -> Any:
    """The playground at ``url`` with ``token`` entered, its first model listing answered."""
    context.setdefault("viewport", {"width": 1280, "height": 900})
    page = browser.new_context(**context).new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")
    return page


def wait_until(page: Any, check: Callable[[], bool], timeout_s: float = 120) -> None:
    """Poll ``check`` between short page waits (the page's CSP forbids Playwright's
    string-evaluating wait_for_function)."""
    for _ in range(int(timeout_s * 10)):
        if check():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.fixture(scope="package")
def keyless_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoxServer]:
    """A server without a key (the default), with only the STT model."""
    root = tmp_path_factory.mktemp("keyless")
    env = {"VOX_PULL_DEFAULTS": "0", "VOX_API_KEY": ""}  # blank: no key, whatever the shell has
    server = VoxServer(root / "home", root / "server.log", env=env)
    server.start()
    pull(server, STT)
    yield server
    server.stop()

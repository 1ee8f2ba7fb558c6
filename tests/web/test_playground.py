"""The playground at / in headless Chromium, against a real server with a key and real models."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import soundfile
import srt

from tests.conftest import VoxServer, wer
from tests.web.conftest import (
    STT,
    TEXT,
    TOKEN,
    TTS,
    chromium_path,
    launch_args,
    open_page,
    pull,
    wait_until,
)

pytestmark = pytest.mark.e2e

# TEXT is spoken afresh (a random piper take) for every run: two of its 16 words may go, as
# "Vox speaks" -> "box beaks" did in one full run (0.125); one word wrong more fails.
TAKE_WER = 0.15


def test_pull_from_the_page(stt_server: VoxServer, browser: Any, shots: Path) -> None:
    page = open_page(browser, stt_server.url)
    page.wait_for_selector(f'#installed tr[data-model="{STT}"]')
    page.on("dialog", lambda dialog: dialog.accept())  # the Remove confirmation
    if page.locator(f'#installed tr[data-model="{TTS}"]').count():
        page.click(f'#installed tr[data-model="{TTS}"] button:text("Remove")')
        page.wait_for_selector(f'#installed tr[data-model="{TTS}"]', state="detached")
    page.fill("#q", "joe")
    page.select_option("#qtype", "tts")
    page.click("#search-form button[type=submit]")
    page.click(f'#results li[data-model="{TTS}"] button:text("Pull")')
    page.wait_for_selector("#pull-bar[data-state=done]", timeout=300_000)
    bar = page.locator("#pull-bar")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "1"
    assert page.text_content("#pull-text") == f"{TTS}: done"
    page.wait_for_selector(f'#installed tr[data-model="{TTS}"]')
    assert page.is_hidden("#error")
    page.locator("#models").screenshot(path=str(shots / "models.png"))


def test_speak_streams_into_web_audio(both_pulled: VoxServer, browser: Any, shots: Path) -> None:
    page = open_page(browser, both_pulled.url)
    page.wait_for_selector("#voice option", state="attached", timeout=120_000)
    page.fill("#text", TEXT)
    page.click("#speak-go")
    page.wait_for_selector("#speak-status[data-state=done]", timeout=120_000)
    status = page.locator("#speak-status")
    seconds = int(status.get_attribute("data-samples") or 0) / int(
        status.get_attribute("data-sample-rate") or 1
    )
    assert 3.0 < seconds < 15.0, seconds  # 15 words of speech
    assert int(status.get_attribute("data-first-audio-ms") or -1) >= 0
    assert "first audio after" in (status.text_content() or "")

    page.select_option("#format", "wav")
    with page.expect_download() as download:
        page.click("#speak-download")
    # A streamed WAV carries 0xFFFFFFFF sizes; libsndfile reads it to its real end.
    samples, rate = soundfile.read(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert 3.0 < len(samples) / rate < 15.0
    assert page.is_hidden("#error")
    page.locator("#speak").screenshot(path=str(shots / "speak.png"))


def test_upload_transcript_and_word_highlight(
    both_pulled: VoxServer, browser: Any, speech_wav: Path, shots: Path
) -> None:
    page = open_page(browser, both_pulled.url)
    page.wait_for_selector("#stt-model option", state="attached")
    page.set_input_files("#file", str(speech_wav))
    page.click("#transcribe")
    page.wait_for_selector("#listen-status[data-state=done]", timeout=180_000)
    words = page.locator("#transcript .word")
    transcript = "".join(words.all_text_contents())
    assert wer(TEXT, transcript) <= TAKE_WER, transcript

    # Seek into the fourth word: it, and only it, is highlighted.
    word = words.nth(3)
    start = float(word.get_attribute("data-start") or 0)
    end = float(word.get_attribute("data-end") or 0)
    page.evaluate(
        "t => { document.getElementById('playback').currentTime = t; }", (start + end) / 2
    )
    page.wait_for_selector("#transcript .word.current")
    assert page.locator("#transcript .word.current").count() == 1
    assert word.get_attribute("aria-current") == "true"

    with page.expect_download() as download:
        page.click(".caption[data-format=srt]")
    cues = list(srt.parse(Path(download.value.path()).read_text()))
    assert cues
    assert wer(TEXT, " ".join(c.content for c in cues)) <= TAKE_WER
    with page.expect_download() as download:
        page.click(".caption[data-format=vtt]")
    assert Path(download.value.path()).read_text().startswith("WEBVTT\n\n00:00:")
    assert page.is_hidden("#error")
    page.locator("#listen").screenshot(path=str(shots / "listen.png"))


def test_record_from_a_fake_microphone(
    both_pulled: VoxServer, playwright: Any, speech_wav: Path
) -> None:
    duration_ms = 1000 * soundfile.info(str(speech_wav)).duration
    mic = playwright.chromium.launch(
        executable_path=chromium_path(),
        args=launch_args(
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={speech_wav}",
        ),
    )
    try:
        page = open_page(mic, both_pulled.url)
        page.wait_for_selector("#stt-model option", state="attached")
        page.click("#record")
        page.wait_for_selector("#record[aria-pressed=true]")
        # The fake microphone plays the file once through, then loops: stop after one pass.
        rec = page.locator("#rec-time")
        wait_until(page, lambda: float(rec.get_attribute("data-ms") or 0) > duration_ms + 500)
        page.click("#record")
        page.wait_for_selector("#listen-status[data-state=done]", timeout=180_000)
        transcript = "".join(page.locator("#transcript .word").all_text_contents())
        # The fake device starts the file with the capture and loops it: the recording is the
        # text once, then the start of the next pass.
        heard = " ".join(transcript.split()[: len(TEXT.split())])
        # A fresh take through a fake microphone: "Vox" is heard as "box" and "quick" as
        # "quit" now and then; the bound still fails on a lost phrase.
        assert wer(TEXT, heard) <= 0.25, transcript
        assert page.is_hidden("#error")
    finally:
        mic.close()


def test_wrong_token_shows_the_401_message(both_pulled: VoxServer, browser: Any) -> None:
    # localhost rather than 127.0.0.1: the page's own origin is allowed under either name.
    page = open_page(browser, f"http://localhost:{both_pulled.port}/", token="wrong")
    page.wait_for_selector("#error:not([hidden])")
    message = page.text_content("#error") or ""
    assert "missing or invalid API key" in message
    assert "HTTP 401" in message

    # The key goes wrong once the models are listed: a refused WebSocket handshake tells the
    # page nothing, so it asks over HTTP why and shows that.
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#tts-model option", state="attached")
    page.fill("#token", "wrong")
    page.click("#token-form button[type=submit]")
    page.click("#speak-go")
    page.wait_for_selector("#speak-status[data-state=error]")
    assert "missing or invalid API key" in (page.text_content("#speak-status") or "")


def test_phone_width(both_pulled: VoxServer, browser: Any, shots: Path) -> None:
    pull(both_pulled, TTS)
    page = open_page(browser, both_pulled.url, viewport={"width": 390, "height": 844})
    page.wait_for_selector(f'#installed tr[data-model="{TTS}"]')
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths  # nothing wider than the phone's screen
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => !e.labels.length).map(e => e.id)"
    )
    assert unlabelled == []
    page.screenshot(path=str(shots / "phone.png"))


def test_a_stream_error_shows_the_api_message(
    both_pulled: VoxServer, browser: Any, speech_wav: Path
) -> None:
    page = open_page(browser, both_pulled.url)
    page.wait_for_selector("#stt-model option", state="attached")
    page.fill("#language", "xx")
    page.set_input_files("#file", str(speech_wav))
    page.click("#transcribe")
    page.wait_for_selector("#listen-status[data-state=error]", timeout=120_000)
    message = page.text_content("#error") or ""
    assert "language 'xx' is not supported" in message, message


def test_keyless_server_and_a_needless_key(
    keyless_server: VoxServer, browser: Any, speech_wav: Path
) -> None:
    # The page offers its "vox" subprotocol (and the key's) to a server that wants no key:
    # the server still selects "vox", or the browser would drop the socket.
    page = open_page(browser, keyless_server.url, token="not-needed")
    page.wait_for_selector("#stt-model option", state="attached")
    page.set_input_files("#file", str(speech_wav))
    page.click("#transcribe")
    page.wait_for_selector("#listen-status[data-state=done]", timeout=180_000)
    transcript = "".join(page.locator("#transcript .word").all_text_contents())
    assert wer(TEXT, transcript) <= TAKE_WER, transcript

"""Habits users bring from Ollama and vox-runtime: VOX_HOST, plain piped tables, --json,
exit codes, files at rest that are real files."""

from __future__ import annotations

import json
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from vox_cli import main, models, runtime
from vox_cli.client import CLIError, server_url
from vox_cli.output import fix_wav_sizes, format_for
from vox_cli.table import plain
from vox_control.settings import Settings, split_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", ("http", "127.0.0.1", None)),
        ("127.0.0.1:18305", ("http", "127.0.0.1", 18305)),
        ("http://127.0.0.1:18305", ("http", "127.0.0.1", 18305)),
        ("https://vox.example:443/", ("https", "vox.example", 443)),
        ("0.0.0.0", ("http", "0.0.0.0", None)),
        ("[::1]:9000", ("http", "::1", 9000)),
        ("::1", ("http", "::1", None)),
        ("", ("http", "127.0.0.1", None)),
    ],
)
def test_split_host_reads_every_form(value: str, expected: tuple[str, str, int | None]) -> None:
    assert split_host(value) == expected


@pytest.mark.parametrize("value", ["127.0.0.1:port", "localhost:0", "localhost:70000"])
def test_split_host_refuses_bad_ports(value: str) -> None:
    with pytest.raises(ValueError, match="port"):
        split_host(value)


def test_serve_binds_what_vox_host_says() -> None:
    s = Settings.from_env({"VOX_HOST": "127.0.0.1:18305"})
    assert (s.host, s.port) == ("127.0.0.1", 18305)
    s = Settings.from_env({"VOX_HOST": "http://0.0.0.0:9000"})
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    # A host without a port keeps VOX_PORT or the default; --port beats the host's port.
    assert Settings.from_env({"VOX_HOST": "::1", "VOX_PORT": "8000"}).port == 8000
    assert Settings.from_env({"VOX_HOST": "localhost:1234"}, port=4321).port == 4321
    assert Settings.from_env({}, host="localhost:1234").port == 1234


def test_cli_talks_to_what_vox_host_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOX_HOST", raising=False)
    assert server_url(None) == "http://127.0.0.1:11435"
    assert server_url("example:8080") == "http://example:8080"
    assert server_url("https://vox.example") == "https://vox.example:11435"
    assert server_url("0.0.0.0:9000") == "http://127.0.0.1:9000"  # bound to all: loopback
    assert server_url("[::1]:9000") == "http://[::1]:9000"
    monkeypatch.setenv("VOX_HOST", "http://127.0.0.1:18305")
    assert server_url(None) == "http://127.0.0.1:18305"
    with pytest.raises(CLIError, match="VOX_HOST"):
        server_url("host:nope")


class FakeClient:
    """The VoxClient surface the listing commands use, answering canned bodies."""

    bodies: ClassVar[dict[str, Any]] = {}
    posted: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, host: str | None = None) -> None:
        pass

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get(self, path: str) -> Any:
        return self.bodies[path.split("?")[0]]

    def get_params(self, path: str, params: dict[str, Any]) -> Any:
        return self.bodies[path]

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self.bodies[path]

    def stream_bytes(self, path: str, body: dict[str, Any]) -> Iterator[bytes]:
        self.posted.append(body)
        yield _streamed_wav(22050, b"\x01\x00" * 22050)


def _streamed_wav(rate: int, pcm: bytes) -> bytes:
    """A WAV as the server streams it: sizes unknown (0xFFFFFFFF)."""
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
        + pcm
    )


LONG = "whisper:large-v3-turbo-with-a-very-long-tag"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.posted.clear()
    FakeClient.bodies.clear()
    FakeClient.bodies.update({
        "/api/list": {"models": [{"name": LONG, "type": "stt", "adapter": "faster-whisper"}]},
        "/api/search": {
            "models": [
                {"name": LONG, "type": "stt", "adapter": "faster-whisper", "size_bytes": 10**9,
                 "installed": False, "description": "word " * 40},
                {"name": "whisper:tiny.en", "type": "stt", "adapter": "faster-whisper"},
            ]
        },
        "/api/ps": {"models": []},
    })  # fmt: skip
    for module in (main, models, runtime):
        monkeypatch.setattr(module, "VoxClient", FakeClient)
    return FakeClient


def test_piped_listings_are_plain_columns_with_whole_names(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    main.list_models()
    models.search("whisper")
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # no colour codes when piped
    lines = [line for line in out.splitlines() if LONG in line]
    assert len(lines) == 2
    assert all(line.split()[0] == LONG for line in lines)
    assert ("word " * 40).strip() in out  # the description is not cut either


def test_json_flag_prints_the_server_body(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    main.list_models(json=True)
    assert json.loads(capsys.readouterr().out) == fake.bodies["/api/list"]


def test_plain_pads_all_but_the_last_column() -> None:
    text = plain(("NAME", "X"), [("a", "1"), ("longer", "2")])
    assert text.splitlines() == ["NAME     X", "a        1", "longer   2"]


def test_stop_of_a_model_not_loaded_fails(fake: type[FakeClient]) -> None:
    fake.bodies["/api/unload"] = {"status": "not_loaded"}
    with pytest.raises(CLIError, match="not loaded"):
        runtime.stop("whisper:tiny.en")


def test_pull_of_a_family_names_its_tags(fake: type[FakeClient]) -> None:
    with pytest.raises(CLIError, match=r"whisper needs a tag: whisper:large.*whisper:tiny\.en"):
        models.suggest_tags(FakeClient(), "whisper")
    with pytest.raises(CLIError, match="no model family"):
        models.suggest_tags(FakeClient(), "nothing")


def test_run_writes_a_wav_with_true_sizes(fake: type[FakeClient], tmp_path: Path) -> None:
    out = tmp_path / "hi.wav"
    main.run("piper:joe", "Hello.", output=out)
    with wave.open(str(out)) as w:
        assert w.getnframes() == 22050
        assert w.getnframes() / w.getframerate() == pytest.approx(1.0)
    assert fake.posted[-1]["response_format"] == "wav"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.mp3", "mp3"), ("a.flac", "flac"), ("a.ogg", "opus"), ("a.opus", "opus"),
     ("a.aac", "aac"), ("a.WAV", "wav"), ("a.pcm", "pcm")],
)  # fmt: skip
def test_the_extension_picks_the_format(name: str, fmt: str) -> None:
    assert format_for(Path(name)) == fmt


def test_an_unknown_extension_or_missing_directory_is_one_line(
    fake: type[FakeClient], tmp_path: Path
) -> None:
    with pytest.raises(CLIError, match="cannot tell the audio format"):
        main.run("piper:joe", "Hello.", output=tmp_path / "a.txt")
    with pytest.raises(CLIError, match="no such directory"):
        main.run("piper:joe", "Hello.", output=tmp_path / "missing" / "a.wav")
    assert list(tmp_path.iterdir()) == []


def test_fix_wav_sizes_skips_extra_chunks(tmp_path: Path) -> None:
    pcm = b"\x00\x00" * 100
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    extra = b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd size: padded
    body = b"WAVEfmt " + fmt + extra + b"data" + struct.pack("<I", 0xFFFFFFFF) + pcm
    path = tmp_path / "x.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + body)
    fix_wav_sizes(path)
    with wave.open(str(path)) as w:
        assert w.getnframes() == 100


def test_stream_transcribe_word_lines() -> None:
    from vox_cli.stream import word_lines

    segments = [{"words": [{"start": 0.0, "end": 0.42, "word": " Hello"}]}, {"words": []}]
    assert list(word_lines(segments)) == ["    0.000 -->     0.420  Hello"]


def test_every_command_has_a_line_of_help() -> None:
    # Lazily registered commands (their modules import websockets or av) name their help where
    # they are registered: `vox --help` listed them with an empty description.
    for name, command in main.app._commands.items():
        if name.startswith("-"):
            continue
        text = command.help if isinstance(command.help, str) else ""
        assert text.strip(), f"`vox {name}` has no help line in `vox --help`"

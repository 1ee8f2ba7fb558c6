"""`vox run`: a missing audio file is named as such; a failed synthesis leaves no file behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vox_cli import main
from vox_cli.client import CLIError


class FailingClient:
    def __init__(self, host: str | None) -> None:
        pass

    def __enter__(self) -> FailingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def stream_bytes(self, path: str, body: dict[str, Any]) -> Iterator[bytes]:
        yield b"RIFF"
        raise CLIError("unknown voice 'nobody'")


def test_a_missing_audio_file_is_not_spoken_as_text(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="no such audio file"):
        main.run("whisper:tiny.en", str(tmp_path / "missing.wav"))


def test_a_failed_synthesis_leaves_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(main, "VoxClient", FailingClient)
    out = tmp_path / "out.wav"
    with pytest.raises(CLIError, match="nobody"):
        main.run("piper:joe", "Hello.", output=out, voice="nobody")
    assert list(tmp_path.iterdir()) == []

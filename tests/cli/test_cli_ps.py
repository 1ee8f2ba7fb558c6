"""`vox ps`: one line per runner whatever the terminal's width (no cell wrapping)."""

from __future__ import annotations

from typing import Any

import pytest
from vox_cli import runtime

PS = {
    "models": [
        {
            "name": "piper:en-us-joe-medium",
            "pid": 4242,
            "device": "cpu",
            "providers": ["CPUExecutionProvider"],
            "memory_mb": 243.4,
            "memory_measured": True,
            "state": "idle",
            "in_flight": 0,
            "queued": 0,
            "expires_in_s": 270.0,
            "keep_alive_s": 300.0,
        }
    ],
    "loading": None,
    "failed": [],
}


class FakeClient:
    def __init__(self, host: str | None) -> None:
        pass

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get(self, path: str) -> dict[str, Any]:
        assert path == "/api/ps"
        return PS


def test_ps_prints_one_line_per_runner_on_a_narrow_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runtime, "VoxClient", FakeClient)
    monkeypatch.setenv("COLUMNS", "60")
    runtime.ps()
    header, row, *rest = capsys.readouterr().out.splitlines()
    assert not rest
    assert header.split()[0] == "NAME"
    assert header.split()[-1] == "UNTIL"
    assert row.split()[:3] == ["piper:en-us-joe-medium", "4242", "cpu"]
    assert row.rstrip().endswith("4 minutes from now")
    assert "243 MB" in row


def test_ps_shows_the_preloads_still_loading_ahead(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runtime, "VoxClient", FakeClient)
    monkeypatch.setitem(PS, "preloading", ["whisper:tiny.en"])
    runtime.ps()
    _, _, row = capsys.readouterr().out.splitlines()
    assert row.split()[0] == "whisper:tiny.en"
    assert "preloading" in row.split()

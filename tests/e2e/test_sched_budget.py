"""End to end: a memory budget that holds one of two real models; they evict each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VoxServer
from tests.e2e.sched_util import STT, TTS, alive, own_server, ps, speak, transcribe

pytestmark = pytest.mark.e2e


def test_alternating_models_evict_each_other_within_the_budget(
    tmp_path: Path, pulled: VoxServer
) -> None:
    # Measure first: both models served once, their runners' RSS as ps reports it.
    with pulled.client() as client:
        wav = speak(client).content
        assert transcribe(client, wav).status_code == 200
        assert speak(client).status_code == 200
        loaded = ps(client)
    sizes = {name: loaded[name]["memory_mb"] for name in (STT, TTS)}
    assert all(loaded[n]["memory_measured"] for n in (STT, TTS)), loaded
    assert all(50 < mb < 2000 for mb in sizes.values()), sizes
    remembered = json.loads((pulled.home / "memory.json").read_text())
    # Remembered for the next first load (the latest runner's peak: other servers share the home).
    assert remembered[f"{STT}@cpu"] > 50
    assert remembered[f"{TTS}@cpu"] > 50
    # Room for the bigger of the two (and its growth), never for both.
    budget = max(sizes.values()) * 1.3
    assert budget < sum(sizes.values()), sizes
    # Other tests' servers share this home and remember their own peaks (a long recording
    # grows whisper's): plan this server with the sizes the budget was made from.
    memory = pulled.home / "memory.json"
    memory.write_text(json.dumps({**remembered, **{f"{n}@cpu": mb for n, mb in sizes.items()}}))

    with own_server(pulled, tmp_path / "budget.log", memory_budget=f"{budget:.0f}MB") as server:
        pids: list[int] = []
        with server.client() as client:
            for round_ in range(3):
                response = transcribe(client, wav)
                assert response.status_code == 200, response.text
                assert "budget" in response.json()["text"].lower()
                now = ps(client)
                assert list(now) == [STT], (round_, now)
                pids.append(now[STT]["pid"])
                response = speak(client)
                assert response.status_code == 200, response.text
                now = ps(client)
                assert list(now) == [TTS], (round_, now)
                assert now[TTS]["memory_measured"]
                assert now[TTS]["memory_mb"] > 50
                pids.append(now[TTS]["pid"])
            # Each switch started a fresh runner and reaped the evicted one.
            assert len(set(pids)) == len(pids)
            assert not any(alive(pid) for pid in pids[:-1])
            # `vox ps` shows the measured memory and when the model unloads.
            table = subprocess.run(
                [sys.executable, "-m", "vox_cli.main", "ps", "--host", server.url],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "COLUMNS": "200"},
            )
            assert table.returncode == 0, table.stderr
            assert "UNTIL" in table.stdout
            assert TTS in table.stdout
            assert "minutes from now" in table.stdout
            assert f"{round(now[TTS]['memory_mb'])} MB" in table.stdout
        assert "evicted (LRU)" in server.log()


def test_a_model_larger_than_the_budget_is_a_clear_503(tmp_path: Path, pulled: VoxServer) -> None:
    with own_server(pulled, tmp_path / "tiny.log", memory_budget="20MB") as server:
        with server.client() as client:
            response = speak(client)
        assert response.status_code == 503, response.text
        assert "memory budget" in response.json()["error"]["message"]

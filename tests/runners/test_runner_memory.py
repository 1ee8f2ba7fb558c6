"""A runner's memory: a deferred import imports on first use; freed heap is handed back after
a load or a request, once nothing else is in flight, and not after a voices ping."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_runner_host import AUDIO, started
from vox_protocol import ListVoices, Load, Loaded, Shutdown, Transcribe, Transcript, Voices
from vox_runner import host, memory


def test_a_deferred_module_imports_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "heavy_vox_test_mod.py").write_text("import sys\nsys.heavy_loaded = True\nX = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_vox_test_mod", raising=False)
    memory.defer_import("heavy_vox_test_mod")
    import heavy_vox_test_mod  # type: ignore[import-not-found]

    assert not getattr(sys, "heavy_loaded", False)
    assert heavy_vox_test_mod.X == 7
    assert sys.heavy_loaded  # type: ignore[attr-defined]
    assert type(sys.modules["heavy_vox_test_mod"]).__name__ == "module"  # the real one now
    monkeypatch.delattr(sys, "heavy_loaded")
    memory.release_memory()  # glibc here: returns; elsewhere a no-op


async def test_memory_is_released_after_loads_and_requests_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released: list[int] = []
    monkeypatch.setattr(host, "release_memory", lambda: released.append(1))
    harness = await started(load=False)
    harness.send(Load(id=1, model_dir="/models/fake", device="cpu"))
    await harness.expect(Loaded)
    harness.send(Transcribe(id=2, audio=AUDIO))
    await harness.expect(Transcript)
    harness.send(ListVoices(id=3))
    await harness.expect(Voices)
    harness.send(Shutdown())
    await harness.exit_code()
    assert len(released) == 2  # the load and the transcription, not the ping


async def test_a_load_of_the_loaded_model_answers_at_once() -> None:
    harness = await started(load=False)
    harness.send(Load(id=1, model_dir="/models/fake", device="cpu", options={"sleep": 0.05}))
    assert (await harness.expect(Loaded)).load_seconds >= 0.05
    harness.send(Load(id=2, model_dir="/models/fake", device="cpu", options={"sleep": 0.05}))
    again = await harness.expect(Loaded)
    assert (again.id, again.load_seconds) == (2, 0.0)
    harness.send(Load(id=3, model_dir="/models/other", device="cpu", options={"sleep": 0.05}))
    assert (await harness.expect(Loaded)).load_seconds >= 0.05  # another model: loads
    harness.send(Shutdown())
    await harness.exit_code()


def test_the_runner_caps_malloc_arenas_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(memory, "_libc", lambda name: lambda *a: calls.append(a))
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    memory.cap_arenas()
    assert calls == [(memory.M_ARENA_MAX, memory.ARENAS)]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")  # the user's choice stands
    memory.cap_arenas()
    assert len(calls) == 1
    monkeypatch.setattr(memory, "_libc", lambda name: None)  # no glibc: nothing to do
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    memory.cap_arenas()

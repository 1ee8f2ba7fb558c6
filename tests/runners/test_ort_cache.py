"""The cache of optimized onnxruntime graphs, against a stand-in onnxruntime module.

The real graphs are exercised end to end (every piper and kokoro load under `vox serve` goes
through it; tests/e2e/test_preload_e2e.py checks the entry); here: what is cached, when it is
used, and what is dropped.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from vox_runner.adapter import CACHE_ENV
from vox_runner.adapters import ort_cache

ALL, DISABLE_ALL = 99, 0


class FakeOptions:
    def __init__(self) -> None:
        self.graph_optimization_level = ALL
        self.optimized_model_filepath = ""
        self.log_severity_level = 2


class FakeOrt(types.ModuleType):
    """Records each session built: the file it read and the level it optimized at."""

    __version__ = "1.0-fake"

    def __init__(self) -> None:
        super().__init__("onnxruntime")
        self.built: list[tuple[str, int]] = []
        self.GraphOptimizationLevel = types.SimpleNamespace(ORT_DISABLE_ALL=DISABLE_ALL)
        fake = self

        class InferenceSession:
            def __init__(self, path: str, options: FakeOptions, providers: list[Any]) -> None:
                data = Path(path).read_bytes()
                if data.startswith(b"junk"):
                    raise RuntimeError("not a graph")
                fake.built.append((Path(path).name, options.graph_optimization_level))
                if options.optimized_model_filepath:
                    Path(options.optimized_model_filepath).write_bytes(b"optimized " + data)

        self.InferenceSession = InferenceSession


@pytest.fixture
def ort(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeOrt:
    fake = FakeOrt()
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return fake


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "voice.onnx"
    path.parent.mkdir()
    path.write_bytes(b"graph v1")
    return path


def entries(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache" / "onnx").iterdir())


def test_the_first_load_optimizes_and_keeps_the_graph_the_next_reads_it(
    ort: FakeOrt, model: Path, tmp_path: Path
) -> None:
    ort_cache.session(model, FakeOptions(), [ort_cache.CPU])
    ort_cache.session(model, FakeOptions(), [ort_cache.CPU])

    (graph,) = [e for e in entries(tmp_path) if e.endswith(".onnx")]
    assert ort.built == [("voice.onnx", ALL), (graph, DISABLE_ALL)]
    assert (tmp_path / "cache" / "onnx" / graph).read_bytes() == b"optimized graph v1"
    assert not [e for e in entries(tmp_path) if e.endswith(".tmp")]


def test_a_changed_model_is_optimized_again_and_its_old_graph_dropped(
    ort: FakeOrt, model: Path, tmp_path: Path
) -> None:
    ort_cache.session(model, FakeOptions(), [ort_cache.CPU])
    before = entries(tmp_path)
    model.write_bytes(b"graph v2, longer")

    ort_cache.session(model, FakeOptions(), [ort_cache.CPU])

    after = entries(tmp_path)
    assert ort.built[-1] == ("voice.onnx", ALL)
    assert len([e for e in after if e.endswith(".onnx")]) == 1
    assert after != before


def test_a_removed_models_graph_goes_at_the_next_write(
    ort: FakeOrt, model: Path, tmp_path: Path
) -> None:
    ort_cache.session(model, FakeOptions(), [ort_cache.CPU])
    other = model.with_name("other.onnx")
    other.write_bytes(b"other graph")
    model.unlink()

    ort_cache.session(other, FakeOptions(), [ort_cache.CPU])

    assert len(entries(tmp_path)) == 2  # the other model's graph and its note only


def test_a_damaged_graph_is_replaced(ort: FakeOrt, model: Path, tmp_path: Path) -> None:
    ort_cache.session(model, FakeOptions(), [ort_cache.CPU])
    (graph,) = [p for p in (tmp_path / "cache" / "onnx").glob("*.onnx")]
    graph.write_bytes(b"junk")

    ort_cache.session(model, FakeOptions(), [ort_cache.CPU])

    assert ort.built[-1] == ("voice.onnx", ALL)
    assert graph.read_bytes() == b"optimized graph v1"


@pytest.mark.parametrize("case", ["gpu", "no cache dir"])
def test_no_cache_for_gpu_sessions_or_without_a_dir(
    ort: FakeOrt, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    providers: list[Any] = [("CUDAExecutionProvider", {}), ort_cache.CPU]
    if case == "no cache dir":
        monkeypatch.delenv(CACHE_ENV)
        providers = [ort_cache.CPU]
    for _ in range(2):
        ort_cache.session(model, FakeOptions(), providers)
    assert ort.built == [("voice.onnx", ALL)] * 2
    assert not (tmp_path / "cache" / "onnx").exists()


def test_an_unwritable_cache_only_costs_the_optimization(
    ort: FakeOrt, model: Path, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through file modes")
    (tmp_path / "cache" / "onnx").mkdir(parents=True)
    (tmp_path / "cache" / "onnx").chmod(0o500)
    try:
        ort_cache.session(model, FakeOptions(), [ort_cache.CPU])
        assert ort.built == [("voice.onnx", ALL)]
    finally:
        (tmp_path / "cache" / "onnx").chmod(0o700)

"""Unit tests of the model-family rules: voice blends, languages, devices, Parakeet words."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from vox_control.errors import BadRequest
from vox_control.store.families import NeedsGpu, blend_voices, check_device, npz_voices
from vox_control.store.registry import Registry

RUNNERS_SRC = Path(__file__).resolve().parents[2] / "runners" / "src"
if str(RUNNERS_SRC) not in sys.path:
    sys.path.insert(0, str(RUNNERS_SRC))

from vox_runner.adapter import AdapterError  # noqa: E402
from vox_runner.adapters import ort  # noqa: E402
from vox_runner.adapters.kokoro import espeak_language  # noqa: E402
from vox_runner.adapters.parakeet import segments_from_words, words_from_tokens  # noqa: E402


def test_control_plane_blend_parts() -> None:
    assert blend_voices("jf_alpha") is None
    assert blend_voices("jf_alpha*0.7+jm_kumo*0.3") == ["jf_alpha", "jm_kumo"]
    with pytest.raises(BadRequest):
        blend_voices("jf_alpha*0+jm_kumo")


def test_espeak_language_tags() -> None:
    assert espeak_language("en") == "en-us"
    assert espeak_language("en-GB") == "en-gb"
    assert espeak_language("pt_BR") == "pt-br"
    assert espeak_language("zh") == "cmn"
    assert espeak_language("es") == "es"


def test_gpu_only_models_refused_on_cpu_only() -> None:
    registry = Registry()
    for name in ("orpheus:3b", "dia:1.6b", "sesame:csm-1b", "fish-speech:v1.4"):
        entry = registry.get(name)
        with pytest.raises(NeedsGpu, match="nothing was downloaded"):
            check_device(entry, "cpu")
        check_device(entry, "cuda:1")
    check_device(registry.get("kokoro:v1.0-int8"), "cpu")


def test_kokoro_catalog_speaks_english_by_default() -> None:
    entry = Registry().get("kokoro:v1.0-int8")
    assert entry.options["lang"] == "en-us"
    assert entry.languages[0] == "en"
    assert len(entry.voices) == 5


@pytest.mark.parametrize(
    "name",
    ["whisper:tiny.en", "whisper:base", "whisper:base.en", "whisper:small", "whisper:medium",
     "whisper:large-v3", "whisper:large-v3-turbo"],
)  # fmt: skip
def test_every_whisper_size_uses_the_device_default_compute_type(name: str) -> None:
    entry = Registry().get(name)
    assert entry.adapter == "faster-whisper"
    assert "compute_type" not in entry.options  # int8 on CPU, float16 on CUDA


def test_npz_voices_read_member_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "voices.npz", af_bella=np.zeros(3), am_adam=np.zeros(3))
    assert npz_voices(tmp_path) == ["af_bella", "am_adam"]
    other = tmp_path / "other"
    (other / "voices").mkdir(parents=True)
    (other / "voices" / "bf_emma.bin").write_bytes(b"\0" * 1024)
    assert npz_voices(other) == ["bf_emma"]
    assert npz_voices(tmp_path / "missing") is None
    with zipfile.ZipFile(tmp_path / "x.npz", "w"):
        pass


def test_onnxruntime_providers_for_devices() -> None:
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort.providers_for("cpu", gpu) == ["CPUExecutionProvider"]
    assert ort.providers_for("cuda", cpu_only) == ["CPUExecutionProvider"]
    assert ort.providers_for("cuda:1", gpu)[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert ort.providers_for("auto", gpu)[0][0] == "CUDAExecutionProvider"
    assert ort.device_name(["CPUExecutionProvider"], "cuda") == "cpu"
    assert ort.device_name(gpu, "cuda:1") == "cuda:1"
    with pytest.raises(AdapterError):
        ort.providers_for("tpu", gpu)


def test_parakeet_words_and_segments() -> None:
    tokens = [" the", " cat", "s", " sat", ".", " a", " dog"]
    starts = [0.0, 0.16, 0.24, 0.4, 0.48, 0.8, 0.96]
    words = words_from_tokens(tokens, starts, end=1.2, step=0.08)
    assert [w.word for w in words] == [" the", " cats", " sat.", " a", " dog"]
    assert words[1].start == 0.16
    assert words[1].end == 0.4
    assert words[-1].end == pytest.approx(1.04)
    segments = segments_from_words(words)
    assert [s.text for s in segments] == [" the cats sat.", " a dog"]
    assert segments[1].start == 0.8


def test_cuda_libraries_come_from_the_nvidia_wheels_in_dependency_order(tmp_path: Path) -> None:
    from vox_runner.adapters.faster_whisper import cuda_libraries

    names = [
        "cublas/lib/libcublas.so.12",
        "cublas/lib/libcublasLt.so.12",
        "cublas/lib/libnvblas.so.12",  # not CTranslate2's: left alone
        "cudnn/lib/libcudnn.so.9",
        "cudnn/lib/libcudnn_ops.so.9",
        "cudnn/lib/libcudnn_graph.so.9",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    assert [p.name for p in cuda_libraries([tmp_path])] == [
        "libcublasLt.so.12",
        "libcublas.so.12",
        "libcudnn_graph.so.9",
        "libcudnn.so.9",
        "libcudnn_ops.so.9",
    ]
    assert cuda_libraries([tmp_path / "nowhere"]) == []

"""End to end in the real faster-whisper sandbox: the WhisperModel that the adapter builds with
CTranslate2's load on a thread (faster_whisper_load.py) is the one faster-whisper's constructor
builds, attribute for attribute and transcript for transcript."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import VoxServer
from tests.e2e.sched_util import speak, transcribe

pytestmark = pytest.mark.e2e

COMPARE = r"""
import sys
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from vox_runner.adapters.faster_whisper_load import whisper_model

model_dir, clip = Path(sys.argv[1]), np.load(sys.argv[2])
kw = dict(device="cpu", device_index=0, compute_type="int8", cpu_threads=0, num_workers=1)
ours = whisper_model(model_dir, **kw)
theirs = WhisperModel(str(model_dir), local_files_only=True, **kw)
objects = {"model", "hf_tokenizer", "feature_extractor"}
assert set(vars(ours)) == set(vars(theirs)), set(vars(ours)) ^ set(vars(theirs))
for name in set(vars(theirs)) - objects:
    assert getattr(ours, name) == getattr(theirs, name), name
assert ours.hf_tokenizer.to_str() == theirs.hf_tokenizer.to_str()
a, b = vars(ours.feature_extractor), vars(theirs.feature_extractor)
assert a.keys() == b.keys()
for name in a:
    assert np.array_equal(a[name], b[name]), name
for name in ("device", "device_index", "compute_type", "is_multilingual", "num_languages"):
    assert getattr(ours.model, name) == getattr(theirs.model, name), name
texts = []
for model in (ours, theirs):
    segments, _ = model.transcribe(clip, beam_size=5, word_timestamps=True)
    texts.append([(s.text, s.start, s.end, [(w.word, w.start) for w in s.words]) for s in segments])
assert texts[0] == texts[1], texts
print(texts[0][0][0])
"""


def test_the_threaded_build_is_faster_whispers_own(tmp_path: Path, pulled: VoxServer) -> None:
    with pulled.client() as client:
        spoken = speak(client)
        assert spoken.status_code == 200, spoken.text
        assert transcribe(client, spoken.content).status_code == 200  # the sandbox is built
    audio, rate = sf.read(io.BytesIO(spoken.content), dtype="float32")
    from soxr import resample

    clip = tmp_path / "clip.npy"
    np.save(clip, np.asarray(resample(audio, rate, 16000), dtype=np.float32))
    python = pulled.home / "sandboxes" / "faster-whisper" / "bin" / "python"
    model_dir = pulled.home / "models" / "whisper" / "tiny.en"
    done = subprocess.run(
        [str(python), "-c", COMPARE, str(model_dir), str(clip)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scheduler" in done.stdout.lower(), done.stdout

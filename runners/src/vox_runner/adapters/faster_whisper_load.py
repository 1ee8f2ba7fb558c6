"""faster-whisper's WhisperModel, built with CTranslate2's load beside the rest of its build.

``WhisperModel.__init__`` (faster-whisper 1.2.1, pinned in runners/pyproject.toml) loads the
CTranslate2 model, then parses tokenizer.json and builds the feature extractor, one after the
other, and the adapter imported faster-whisper before all that. CTranslate2 reads its weights
and quantizes them (tiny.en's model.bin holds float16; int8 on CPU) without holding the GIL, so
here it loads on a thread while this thread imports faster-whisper, parses the tokenizer and
builds the feature extractor. On the 2-core VM that was 0.15-0.21 s of load beside 0.14 s of
the rest.

The object is the one ``__init__`` builds, attribute for attribute: tests/e2e/test_whisper_load.py
compares the two in a real sandbox, transcripts included, so that a faster-whisper whose
constructor changed fails there. A model dir without tokenizer.json (faster-whisper would fetch
one from the Hugging Face Hub) gets faster-whisper's own constructor.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

# WhisperModel.__init__'s constants (faster-whisper 1.2.1).
INPUT_STRIDE = 2
TIME_PRECISION = 0.02
MAX_LENGTH = 448


def whisper_model(
    model_dir: Path,
    *,
    device: str,
    device_index: int,
    compute_type: str,
    cpu_threads: int,
    num_workers: int,
) -> Any:
    """``faster_whisper.WhisperModel(model_dir, ...)``, built with the load on a thread."""
    path = str(model_dir)
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        from faster_whisper import WhisperModel

        return WhisperModel(
            path,
            device=device,
            device_index=device_index,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
        )

    import ctranslate2

    loaded: dict[str, Any] = {}

    def load() -> None:
        try:
            loaded["model"] = ctranslate2.models.Whisper(
                path,
                device=device,
                device_index=device_index,
                compute_type=compute_type,
                intra_threads=cpu_threads,
                inter_threads=num_workers,
            )
        except BaseException as exc:  # raised again on the calling thread
            loaded["error"] = exc

    thread = threading.Thread(target=load, name="whisper-load", daemon=True)
    thread.start()
    try:
        import tokenizers
        from faster_whisper import WhisperModel
        from faster_whisper.feature_extractor import FeatureExtractor
        from faster_whisper.utils import get_logger

        model = WhisperModel.__new__(WhisperModel)
        model.logger = get_logger()
        model.hf_tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        model.feat_kwargs = model._get_feature_kwargs(path, None)
        model.feature_extractor = FeatureExtractor(**model.feat_kwargs)
    finally:
        thread.join()  # also when the above failed: the load must not outlive this call
    if "error" in loaded:
        raise loaded["error"]
    model.model = loaded["model"]
    features = model.feature_extractor
    model.input_stride = INPUT_STRIDE
    model.num_samples_per_token = features.hop_length * INPUT_STRIDE
    model.frames_per_second = features.sampling_rate // features.hop_length
    model.tokens_per_second = features.sampling_rate // model.num_samples_per_token
    model.time_precision = TIME_PRECISION
    model.max_length = MAX_LENGTH
    return model

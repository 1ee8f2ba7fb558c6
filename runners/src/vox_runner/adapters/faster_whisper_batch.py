"""Several whole requests in one faster-whisper model call (one encoder batch, one beam search).

faster-whisper's ``BatchedInferencePipeline`` batches the VAD chunks of one long file; here the
batch is made of separate requests, each at most one 30 s window, so one call answers them all.
Decoding follows ``WhisperModel.transcribe``'s defaults for such a clip (beam search, the same
suppressed tokens and thresholds, a window that is silence dropped) at temperature 0 only:
clips that would need the fallback temperatures, a prompt or word timestamps are never batched
(FasterWhisperAdapter.batch_key). On bench/batching.py's clips the words match the one-by-one
path exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from vox_protocol import Segment, Transcribe, Transcript

BATCH_WINDOW_S = 30  # Whisper's window: a longer clip needs the sequential, seeking path


def batch_decode(
    model: Any, requests: list[Transcribe], language: str, task: str, beam_size: int
) -> list[Transcript]:
    """Blocking: transcribe ``requests`` (16 kHz float32 clips of one window) together."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import (
        BatchedInferencePipeline,
        TranscriptionOptions,
        get_suppressed_tokens,
    )

    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task, language)
    options = TranscriptionOptions(
        beam_size=beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
        no_repeat_ngram_size=0, log_prob_threshold=-1.0, no_speech_threshold=0.6,
        compression_ratio_threshold=2.4, temperatures=[0.0], initial_prompt=None, prefix=None,
        suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
        max_new_tokens=None, hotwords=None, word_timestamps=False,
        hallucination_silence_threshold=None, condition_on_previous_text=False,
        clip_timestamps=[], prompt_reset_on_temperature=0.5,
        multilingual=False, without_timestamps=False, max_initial_timestamp=1.0,
    )  # fmt: skip
    clips = [np.frombuffer(r.audio, dtype="<f4") for r in requests]
    features = np.stack([pad_or_trim(model.feature_extractor(clip)) for clip in clips])
    rate = int(model.feature_extractor.sampling_rate)
    durations = [len(clip) / rate for clip in clips]
    metadata = [{"offset": 0.0, "duration": d, "segments": []} for d in durations]
    outputs = BatchedInferencePipeline(model).forward(features, tokenizer, metadata, options)
    results = []
    for request, duration, pieces in zip(requests, durations, outputs, strict=True):
        segments = [
            Segment(
                start=float(piece["start"]),
                end=float(piece["end"]),
                text=piece["text"],
                avg_logprob=float(piece["avg_logprob"]),
                no_speech_prob=float(piece["no_speech_prob"]),
            )
            for piece in pieces
            if not _silence(piece, options)
        ]
        results.append(
            Transcript(
                id=request.id,
                text="".join(s.text for s in segments).strip(),
                language=language,
                language_probability=1.0,
                duration=duration,
                segments=segments,
            )
        )
    return results


def _silence(piece: dict[str, Any], options: Any) -> bool:
    """WhisperModel.generate_segments' rule: likely no speech and a low-confidence text."""
    return bool(
        piece["no_speech_prob"] > options.no_speech_threshold
        and piece["avg_logprob"] < options.log_prob_threshold
    )

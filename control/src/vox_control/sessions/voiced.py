"""Where audio around a seam has speech, by frame energy: what the stitch checks words against."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vox_control.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

FRAME_S = 0.02
# Speech is taken as frames within 20 dB of the window's loud speech (its 95th-percentile frame
# level): far above a recording's noise floor, below every syllable piper or a voice makes.
_BELOW_LOUD = 0.1
_FLOOR = 1e-4  # -80 dBFS: digital silence is never speech, however quiet the window


def speech_level(samples: npt.NDArray[np.float32], rate: int) -> float:
    """The frame RMS above which a frame of this window counts as speech."""
    rms = _frame_rms(samples, rate)
    if rms.size == 0:
        return _FLOOR
    return max(_BELOW_LOUD * float(np.percentile(rms, 95)), _FLOOR)


def voiced_spans(
    samples: npt.NDArray[np.float32], rate: int, start: float, level: float
) -> list[tuple[float, float]]:
    """Spans (absolute seconds; ``samples`` begin at ``start``) whose frames are above ``level``."""
    on = _frame_rms(samples, rate) > level
    # Edges of runs of voiced frames: +1 where one begins, -1 just past where one ends.
    edges = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
    begins, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        (start + float(b) * FRAME_S, start + float(e) * FRAME_S)
        for b, e in zip(begins, ends, strict=True)
    ]


def _frame_rms(samples: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.float64]:
    frame = max(1, round(rate * FRAME_S))
    n = samples.size // frame
    frames = samples[: n * frame].astype(np.float64).reshape(n, frame)
    rms: npt.NDArray[np.float64] = np.sqrt((frames**2).mean(axis=1))
    return rms


def quietest(samples: npt.NDArray[np.float32], rate: int, span: float = 0.3) -> int:
    """The sample at the middle of the quietest ``span`` seconds of ``samples`` (the latest
    such place on a tie): where a long recording is best cut into windows."""
    rms = _frame_rms(samples, rate)
    if rms.size == 0:
        return samples.size
    run = max(1, min(rms.size, round(span / FRAME_S)))
    energy = np.convolve(rms, np.ones(run), mode="valid")
    best = energy.size - 1 - int(np.argmin(energy[::-1]))
    frame = max(1, round(rate * FRAME_S))
    return (best + run // 2) * frame

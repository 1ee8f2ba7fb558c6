"""Voice blends (``a+b``, ``a*0.7+b*0.3``): parsed here once, for the control plane and runners."""

from __future__ import annotations

import math
import re

_PART = re.compile(r"^\s*(?P<id>[A-Za-z0-9_.-]+)\s*(?:\*\s*(?P<w>[0-9]*\.?[0-9]+)\s*)?$")


def is_blend(voice: str) -> bool:
    return "+" in voice or "*" in voice


def parse_blend(spec: str) -> list[tuple[str, float]]:
    """``a``, ``a+b`` or ``a*0.7+b*0.3`` -> [(voice id, weight)], weights summing to 1.

    Raises ValueError, naming what is wrong, for anything else (an empty part, a weight that
    is not a positive number).
    """
    parts: list[tuple[str, float]] = []
    for raw in spec.split("+"):
        match = _PART.match(raw)
        if match is None:
            raise ValueError(f"bad voice {spec!r}: expected 'voice', 'a+b' or 'a*0.7+b*0.3'")
        weight = float(match.group("w")) if match.group("w") is not None else 1.0
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"bad voice {spec!r}: each weight must be a positive number")
        parts.append((match.group("id"), weight))
    total = sum(w for _, w in parts)
    return [(vid, w / total) for vid, w in parts]

"""Split text that arrives in pieces into complete sentences, as soon as each one is complete.

The boundary rule is the piper adapter's (vox_runner.adapters.piper.split_sentences): a
sentence ends at . ! ? (plus closing quotes or brackets) followed by whitespace and a capital
letter or digit, never inside an ellipsis. Every cut it makes is one espeak-ng makes too, so
speaking the sentences one by one gives the same audio as speaking the whole text at once.
A boundary is only certain once the next sentence's first letter has arrived ("Mr. Smith"
must not be cut at "Mr. "), so the last sentence waits for more text, a flush, or the end.
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"""[.!?]+["'”’)\]]*(?=\s+["'“‘(\[]?[A-Z0-9])""")
_CLAUSE = re.compile(r"[,;:]\s")

# A run of text this long without a sentence end is cut at a clause or a space anyway:
# the first audio must not wait for a whole unpunctuated page.
MAX_SENTENCE_CHARS = 600


def _boundaries(text: str) -> list[int]:
    ends: list[int] = []
    for match in _BOUNDARY.finditer(text):
        stop = match.group().rstrip("\"'”’)]")
        if stop.startswith("..") and not {"!", "?"} & set(stop):
            continue  # "Wait... What?" is one sentence to espeak
        ends.append(match.end())
    return ends


def _forced_cut(text: str, limit: int) -> int:
    """Where to cut an over-long run: the last clause mark, else the last space, else hard."""
    head = text[:limit]
    clauses = [m.end() for m in _CLAUSE.finditer(head)]
    if clauses and clauses[-1] > limit // 2:
        return clauses[-1]
    space = head.rfind(" ")
    return space + 1 if space > limit // 2 else limit


class SentenceSplitter:
    """Feed text pieces; get back the sentences they complete (stripped, never empty)."""

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS) -> None:
        self._buffer = ""
        self._max = max_chars

    @property
    def pending(self) -> str:
        return self._buffer

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        out: list[str] = []
        start = 0
        for end in _boundaries(self._buffer):
            out.append(self._buffer[start:end])
            start = end
        rest = self._buffer[start:]
        while len(rest) > self._max:
            cut = _forced_cut(rest, self._max)
            out.append(rest[:cut])
            rest = rest[cut:]
        self._buffer = rest
        return [s.strip() for s in out if s.strip()]

    def flush(self) -> list[str]:
        """Everything still buffered, as the last sentence (at end of input or on request)."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def reset(self) -> None:
        self._buffer = ""

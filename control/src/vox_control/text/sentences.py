"""Sentences: the one place text is cut into the pieces a runner speaks.

The control plane alone splits; runners synthesize exactly the text they are given. Each
sentence is one runner request, so the first sentence's audio leaves before the second is
synthesized, and concurrent requests interleave sentence by sentence in the runner.

Boundaries come from pysbd (rule-based, the "Golden Rules" of sentence segmentation): "Dr.
Smith met Mr. Jones at 5 p.m." stays one sentence, "3.14" is no boundary, and Japanese or
Chinese text is cut at 。！？ (pysbd's ja/zh rules, used for text with those marks when the
request names no language pysbd knows). An ellipsis without ! or ? never ends a sentence
("Wait... What?" is one), as espeak-ng reads it.

Text may arrive in pieces (a WebSocket session): a boundary is only certain once the next
sentence has begun ("Mr. " must not be cut before "Smith" arrives), so the last sentence waits
for more text, a flush, or the end. pysbd's cost grows faster than linearly with its input, so
it only ever sees a bounded window of the buffer: bounded work for any input.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from vox_control.lazy import lazy_module

if TYPE_CHECKING:
    import pysbd
else:
    pysbd = lazy_module("pysbd")  # loaded by the first text spoken, not at start


_CLAUSE = re.compile(r"[,;:、，；]\s?")
# Where pysbd could find a sentence that has certainly ended: a stop, then space and more text
# (or a CJK stop and more text). Without a new one, fed text is not segmented again: a client
# streaming an LLM's tokens costs a regex per token, not a pysbd pass.
_CANDIDATE = re.compile(r"""[.!?…]["'”’)\]]*\s+\S|[。！？]\s*\S""")
_CJK_STOPS = frozenset("。！？")
_ELLIPSIS = ("..", "…")

# A run of text this long without a sentence end is cut at a clause or a space anyway:
# the first audio must not wait for a whole unpunctuated page.
MAX_SENTENCE_CHARS = 600


@functools.cache
def _segmenter(language: str) -> pysbd.Segmenter:
    return pysbd.Segmenter(language=language, clean=False, char_span=True)


def rules_for(language: str | None, text: str) -> str:
    """The pysbd language whose rules cut ``text``: the request's, else by its punctuation."""
    if language:
        short = language.strip().lower().replace("_", "-").split("-")[0]
        if short in pysbd.languages.LANGUAGE_CODES:
            return short
        if short in ("cmn", "yue"):
            return "zh"
    return "ja" if _CJK_STOPS & set(text) else "en"


def _ends(text: str, language: str | None) -> list[int]:
    """Offsets in ``text`` where a sentence ends (after its trailing space), in order."""
    ends: list[int] = []
    for span in _segmenter(rules_for(language, text)).segment(text):
        if span.sent.rstrip().endswith(_ELLIPSIS):
            continue  # "Wait... What?": the ellipsis stays inside the sentence
        ends.append(span.end)
    return ends


def _begun(text: str, end: int) -> bool:
    """Whether the sentence ending at ``end`` is certainly over: a space (or a CJK stop, which
    needs none) closes it and the next sentence has begun ("Fourth.." may yet be "Fourth...")."""
    head = text[:end]
    return bool(text[end:].strip()) and (head[-1:].isspace() or head.rstrip()[-1:] in _CJK_STOPS)


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

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS, language: str | None = None) -> None:
        self._buffer = ""
        self._max = max_chars
        self._language = language
        self._seen = 0  # candidates in the buffer that pysbd has already declined

    @property
    def pending(self) -> str:
        return self._buffer

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        out: list[str] = []
        candidates = len(_CANDIDATE.findall(self._buffer))
        if candidates <= self._seen and len(self._buffer) <= self._max:
            return out
        while True:
            # A window of two sentences' length: every sentence but the window's last is
            # complete, and the last one is looked at again with what follows it.
            window = self._buffer[: 2 * self._max]
            complete = [end for end in _ends(window, self._language) if _begun(window, end)]
            if complete:
                cut = complete[-1]
                out += self._cut(window[:cut], complete)
            elif len(self._buffer) > self._max:
                cut = _forced_cut(self._buffer, self._max)
                out.append(self._buffer[:cut])
            else:
                break
            self._buffer = self._buffer[cut:]
        self._seen = len(_CANDIDATE.findall(self._buffer))
        return [s.strip() for s in out if s.strip()]

    @staticmethod
    def _cut(text: str, ends: list[int]) -> list[str]:
        starts = [0, *ends[:-1]]
        return [text[a:b] for a, b in zip(starts, ends, strict=True)]

    def flush(self) -> list[str]:
        """Everything still buffered, as the last sentences (at end of input or on request)."""
        # feed() leaves at most max_chars here, so this segmenting is bounded too.
        rest, self._buffer, self._seen = self._buffer, "", 0
        ends = [end for end in _ends(rest, self._language) if end < len(rest)] + [len(rest)]
        return [s.strip() for s in self._cut(rest, ends) if s.strip()]

    def reset(self) -> None:
        self._buffer = ""
        self._seen = 0


def split_sentences(text: str, language: str | None = None) -> list[str]:
    """All of ``text``'s sentences at once (a whole request's text)."""
    splitter = SentenceSplitter(language=language)
    return splitter.feed(text) + splitter.flush()

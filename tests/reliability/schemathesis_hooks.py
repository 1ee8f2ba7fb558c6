"""Schemathesis hooks for test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Speech text is cut short: a fuzzer's 100,000-character input is a valid request that piper
would spend minutes speaking on a CI core, which tests the machine's speed, not the document.
"""

from __future__ import annotations

from typing import Any

import schemathesis

MAX_SPEECH_CHARS = 80


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    body = case.body
    if isinstance(body, dict):
        for field in ("input", "text"):
            if isinstance(body.get(field), str):
                body[field] = body[field][:MAX_SPEECH_CHARS]

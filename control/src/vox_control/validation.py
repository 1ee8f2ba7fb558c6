"""Checks on hostile request input shared by the HTTP routes and the WebSocket sessions.

JSON is bounded before it is decoded: msgspec and the json module both recurse per nesting
level, so 100,000 nested brackets (200 KB) raise RecursionError deep inside the decoder. The
depth is measured with C-speed passes (strings removed by a regex, brackets kept by
``bytes.translate``), so a body of any allowed size is checked in bounded time.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.enums import RequestEncodingType

from vox_control.errors import BadRequest
from vox_control.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")  # imported with the first audio: vox_control.lazy

# Deeper than any message this server takes (realtime extras are 3 levels) and far below the
# decoders' recursion limits (about 1,000).
MAX_JSON_DEPTH = 64
# A JSON route's whole body: 100,000 characters of text (the speech limit) escaped as
# \uXXXX surrogate pairs is 1.2 MB; nothing else a JSON route takes comes close.
JSON_MAX_BYTES = 2 * 1024 * 1024
MAX_TEXT_CHARS = 100_000

# A JSON string literal, unrolled so that long strings cost no backtracking.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# Language tags: ISO 639 codes with optional BCP 47 subtags ("en", "yue", "pt-BR", "zh_Hans").
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")


def json_depth(raw: bytes | str) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (brackets in strings excluded)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps).max())


def check_json_depth(raw: bytes | str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH before any decoder sees it."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise BadRequest(
            f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json"
        )


async def json_body_guard(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: a JSON body is size- and depth-checked before it is decoded.

    Only handlers whose ``data`` is JSON are checked (uploads are streamed by the multipart
    parser and never reach here), whatever the content type says: Litestar decodes such a
    body as JSON anyway. Reading it here caches it for the handler, and the read honours the
    handler's ``request_max_body_size`` (413 past it).
    """
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return
    if getattr(data.kwarg_definition, "media_type", None) not in (None, RequestEncodingType.JSON):
        return
    check_json_depth(await request.body())


def check_text(text: str | None, param: str = "input", max_chars: int = MAX_TEXT_CHARS) -> str:
    """Speech text: non-empty, within ``max_chars``, and free of NUL characters."""
    if text is None or not text.strip():
        raise BadRequest(f"'{param}' must be non-empty text", param=param)
    if len(text) > max_chars:
        raise BadRequest(
            f"'{param}' is {len(text)} characters; the limit is {max_chars}", param=param
        )
    check_no_nul(text, param)
    return text


def check_no_nul(text: str, param: str) -> None:
    """NUL ends a C string: the synthesizers' phonemizers fail on it (a 500 before this)."""
    if "\x00" in text:
        raise BadRequest(f"'{param}' contains a NUL character (U+0000)", param=param)


def check_language(language: str | None, supported: list[str] | None = None) -> str | None:
    """A language tag that is well formed and, when the model lists its languages, one of them.

    Returns the tag (None for none, "" and "auto"); raises BadRequest naming ``language``.
    """
    if language is None or language in ("", "auto"):
        return None
    if not _LANGUAGE.fullmatch(language):
        raise BadRequest(
            f"language {language[:40]!r} is not a language code (like en or pt-BR)",
            param="language",
        )
    if supported and language not in supported:
        raise BadRequest(
            f"language {language!r} is not supported (supported: {', '.join(supported[:20])}"
            f"{', ...' if len(supported) > 20 else ''})",
            param="language",
        )
    return language

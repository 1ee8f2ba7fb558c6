"""Model names: ``family:tag``, validated the same way wherever a name enters Vox."""

from __future__ import annotations

import re

from vox_control.errors import BadRequest

MAX_NAME_LENGTH = 128
# One part of a name, and an adapter name: what may appear in a path component of the store.
NAME_PART = re.compile(r"[a-z0-9][a-z0-9._-]*")


class InvalidModelName(BadRequest, ValueError):
    """A model name that is not ``family:tag``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid ``family:tag`` model name, else raise InvalidModelName."""
    if not isinstance(name, str):
        raise InvalidModelName(f"model name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidModelName("model name is empty; expected 'family:tag'")
    shown = name if len(name) <= 40 else name[:40] + "..."
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidModelName(f"model name '{shown}' is longer than {MAX_NAME_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise InvalidModelName(f"model name {shown!r} contains whitespace or control characters")
    if "/" in name or "\\" in name:
        raise InvalidModelName(f"model name '{shown}' contains a path separator")
    if ".." in name:
        raise InvalidModelName(f"model name '{shown}' contains '..'")
    if name.count(":") != 1:
        raise InvalidModelName(f"model name '{shown}' must have exactly one ':' as in 'family:tag'")
    family, tag = name.split(":")
    for what, part in (("family", family), ("tag", tag)):
        if not part:
            raise InvalidModelName(f"model name '{shown}' has an empty {what}")
        if part != part.lower():
            raise InvalidModelName(f"model name '{shown}' must be lowercase")
        if not NAME_PART.fullmatch(part):
            raise InvalidModelName(
                f"model name '{shown}': {what} '{part}' must start with a letter or digit and "
                "contain only a-z, 0-9, '.', '_' and '-'"
            )
    return name


def split_name(name: str) -> tuple[str, str]:
    """Validate ``name`` and return its (family, tag)."""
    family, tag = validate_name(name).split(":")
    return family, tag

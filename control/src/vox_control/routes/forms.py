"""Parsing of multipart form fields, with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vox_control.errors import BadRequest

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def text_field(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"form field '{name}' must be text", param=name)
    return value.strip() or None


def float_field(form: Mapping[str, Any], name: str) -> float | None:
    value = text_field(form, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadRequest(
            f"form field '{name}' must be a number, got {value!r}", param=name
        ) from None


def int_field(form: Mapping[str, Any], name: str) -> int | None:
    value = text_field(form, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(
            f"form field '{name}' must be an integer, got {value!r}", param=name
        ) from None


def bool_field(form: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = text_field(form, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(f"form field '{name}' must be true or false, got {value!r}", param=name)


def list_field(form: Mapping[str, Any], name: str) -> list[str]:
    """Repeated fields (``timestamp_granularities[]``) arrive as a list or a single value."""
    value = form.get(name)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]

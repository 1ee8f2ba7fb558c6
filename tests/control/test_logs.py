"""Log formatting: JSON lines with the request id and extras; probes dropped from access."""

from __future__ import annotations

import json
import logging

import pytest
from vox_control.logs import JsonFormatter, _Context, configure_logging, request_id


def _record(name: str, msg: str, args: tuple[object, ...] = ()) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_json_line_carries_request_id_and_extras() -> None:
    record = _record("vox", "loaded %s", ("piper",))
    record.model = "piper:joe"
    token = request_id.set("abc123")
    try:
        assert _Context().filter(record)
    finally:
        request_id.reset(token)
    body = json.loads(JsonFormatter().format(record))
    assert body["message"] == "loaded piper"
    assert body["request_id"] == "abc123"
    assert body["model"] == "piper:joe"
    assert body["level"] == "info"


def test_probes_leave_the_access_log_but_failures_stay() -> None:
    fmt = '%s - "%s %s HTTP/%s" %d'
    ok = _record("uvicorn.access", fmt, ("1.2.3.4:5", "GET", "/api/health", "1.1", 200))
    failed = _record("uvicorn.access", fmt, ("1.2.3.4:5", "GET", "/api/health", "1.1", 503))
    other = _record("uvicorn.access", fmt, ("1.2.3.4:5", "GET", "/api/list?x=1", "1.1", 200))
    assert not _Context().filter(ok)
    assert _Context().filter(failed)
    assert _Context().filter(other)


def test_lifecycle_lines_are_vox_server() -> None:
    record = _record("uvicorn.error", "Started server process")
    _Context().filter(record)
    assert record.name == "vox.server"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        configure_logging("info", "xml")


def test_download_urls_only_at_debug() -> None:
    configure_logging("info")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    configure_logging("debug")
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    configure_logging("info")

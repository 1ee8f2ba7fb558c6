"""Server logging: text for people or one JSON object a line for collectors (VOX_LOG_FORMAT).

Every line about a request carries its request id (set by the request-id middleware in this
context variable), health and readiness polls stay out of the access log, and uvicorn's
lifecycle lines are labelled `vox.server` instead of the misleading `uvicorn.error`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any

# The id of the request being served on this task, for every log line about it.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Polled by probes every few seconds: one access line each would bury everything else.
QUIET_PATHS = frozenset({"/api/health", "/api/ready", "/v1/health", "/health", "/metrics"})

# LogRecord's own attributes: anything else on a record came from `extra=` and is kept.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
}


class _Context(logging.Filter):
    """Stamps the request id, renames uvicorn's lifecycle logger, drops probe polls."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":
            record.name = "vox.server"
        if record.name == "uvicorn.access" and _is_quiet(record):
            return False
        if getattr(record, "request_id", None) is None:  # an explicit extra= wins
            record.request_id = request_id.get()
        return True


def _is_quiet(record: logging.LogRecord) -> bool:
    # uvicorn's access record args: (client, method, path with query, http version, status).
    args = record.args if isinstance(record.args, tuple) else ()
    if len(args) < 3:
        return False
    path = str(args[2]).split("?", 1)[0]
    return path in QUIET_PATHS and int(str(args[-1])) < 400


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            body["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                body[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [{rid}]" if rid else line


def configure_logging(level: str, fmt: str = "text") -> None:
    """Root logging for the server process: one handler on stderr, the chosen format."""
    if fmt not in {"text", "json"}:
        raise ValueError(f"log format {fmt!r}: expected text or json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Context())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Download URLs (one httpx line per request of a pull) are debugging detail, not news.
    for name in ("httpx", "httpcore", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.DEBUG if level.lower() == "debug" else "WARNING")
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print a second, unformatted copy.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True

"""Errors with their HTTP status, and the one exception-handler map the app installs."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from vox_control.audio.decode import AudioDecodeError
from vox_control.runner_client import RunnerDied, RunnerRequestError
from vox_control.store.disk import NotInstalled
from vox_control.store.registry import CatalogError, InvalidModelName, UnknownModel
from vox_control.store.sources.base import IntegrityError, OfflineError, PullError

log = logging.getLogger("vox.errors")


class VoxError(Exception):
    """An error a client can act on: carries its status, an error type and the parameter."""

    status = 400
    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        # Sent with the error response: Retry-After on 429/503, for instance.
        self.headers = dict(headers or {})


class BadRequest(VoxError):
    status = 400


class ModelNotFound(VoxError):
    status = 404
    type = "not_found_error"

    def __init__(self, message: str, *, param: str | None = "model") -> None:
        super().__init__(message, param=param, code="model_not_found")


class PayloadTooLarge(VoxError):
    status = 413


class Unprocessable(VoxError):
    """Well-formed, but a value this server cannot act on (a rate the codec cannot carry)."""

    status = 422


class Unavailable(VoxError):
    status = 503
    type = "server_error"


class Overloaded(VoxError):
    """Too many requests queued for a model; Retry-After says when to try again."""

    status = 429
    type = "rate_limit_error"


class LoadError(Exception):
    """A runner could not be started or could not load its model (raised by the scheduler)."""


class UpstreamFailed(VoxError):
    """The runner process failed (crashed, or its adapter raised)."""

    status = 502
    type = "server_error"


# Runner error codes -> HTTP status. bad_request/unsupported are the caller's fault.
_RUNNER_STATUS = {
    "bad_request": 400,
    "unsupported": 400,
    "cancelled": 499,
    "not_loaded": 503,
    "load_failed": 500,
    "inference_failed": 500,
    "version_mismatch": 500,
    "protocol": 502,
    "internal": 500,
}


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope, used by every route so clients parse one shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _respond(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(content=body, status_code=status, media_type=MediaType.JSON, headers=headers)


def vox_error_handler(_: Request[Any, Any, Any], exc: VoxError) -> Response[Any]:
    body = error_body(exc.message, exc.type, param=exc.param, code=exc.code)
    return _respond(exc.status, body, headers=getattr(exc, "headers", None) or None)


def audio_error_handler(_: Request[Any, Any, Any], exc: AudioDecodeError) -> Response[Any]:
    # 400 for what is not audio, 413 for audio past the duration limit (AudioTooLong).
    return _respond(
        exc.status, error_body(str(exc), "invalid_request_error", param="file", code=exc.code)
    )


def runner_error_handler(_: Request[Any, Any, Any], exc: RunnerRequestError) -> Response[Any]:
    status = _RUNNER_STATUS.get(exc.code, 500)
    type_ = "invalid_request_error" if status < 500 else "server_error"
    return _respond(status, error_body(exc.message, type_, code=exc.code))


def runner_died_handler(request: Request[Any, Any, Any], exc: RunnerDied) -> Response[Any]:
    # The runner's last stderr lines go to the server log: that is where the cause lives.
    tail = "\n".join(f"  | {line}" for line in exc.stderr_tail[-20:])
    log.error("%s %s failed: %s\n%s", request.method, request.url.path, exc, tail)
    return _respond(
        502,
        error_body(
            f"the runner for {exc.name} stopped while serving this request "
            f"(exit code {exc.returncode}); it will be restarted on the next request",
            "server_error",
            code="runner_died",
        ),
    )


def unknown_model_handler(_: Request[Any, Any, Any], exc: UnknownModel) -> Response[Any]:
    return _respond(
        404, error_body(str(exc), "not_found_error", param="model", code="model_not_found")
    )


def bad_name_handler(_: Request[Any, Any, Any], exc: InvalidModelName) -> Response[Any]:
    return _respond(400, error_body(str(exc), "invalid_request_error", param="model"))


def catalog_error_handler(_: Request[Any, Any, Any], exc: CatalogError) -> Response[Any]:
    return _respond(500, error_body(str(exc), "server_error", code="catalog_error"))


def load_error_handler(_: Request[Any, Any, Any], exc: LoadError) -> Response[Any]:
    log.error("%s", exc)
    return _respond(500, error_body(str(exc), "server_error", code="load_failed"))


def pull_error_handler(_: Request[Any, Any, Any], exc: PullError) -> Response[Any]:
    # Offline refusals and unreachable hubs are the server's situation, not the request's.
    if isinstance(exc, OfflineError):
        return _respond(503, error_body(str(exc), "server_error", code="offline"))
    code = "integrity_error" if isinstance(exc, IntegrityError) else "pull_failed"
    return _respond(502, error_body(str(exc), "server_error", code=code))


def not_installed_handler(_: Request[Any, Any, Any], exc: NotInstalled) -> Response[Any]:
    return _respond(
        404, error_body(str(exc), "not_found_error", param="model", code="model_not_found")
    )


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    message = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        message = f"{exc.detail}: {exc.extra}"
    type_ = "invalid_request_error" if status < 500 else "server_error"
    return _respond(status, error_body(str(message), type_), headers=exc.headers)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(
        HTTP_500_INTERNAL_SERVER_ERROR,
        error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error"),
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    VoxError: vox_error_handler,
    AudioDecodeError: audio_error_handler,
    RunnerRequestError: runner_error_handler,
    RunnerDied: runner_died_handler,
    LoadError: load_error_handler,
    UnknownModel: unknown_model_handler,
    InvalidModelName: bad_name_handler,
    CatalogError: catalog_error_handler,
    PullError: pull_error_handler,
    NotInstalled: not_installed_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}

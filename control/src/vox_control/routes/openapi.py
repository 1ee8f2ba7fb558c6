"""What the OpenAPI document says beyond the handlers' signatures, and the offline docs UI.

Litestar derives a route's document from its signature; what a signature cannot say lives
here: the error envelope every error status carries, the media types of audio and subtitle
responses, the fields of the multipart forms (handlers take the raw form so that each field's
error names it), and request bodies where one of two fields is required.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from vox_control.audio.encode import MAX_RATE, MIN_RATE, SPEECH_FORMATS
from vox_control.audio.encode import MEDIA_TYPES as AUDIO_TYPES
from vox_control.inference import MAX_SPEED, MIN_SPEED
from vox_control.text.subtitles import MEDIA_TYPES as TRANSCRIPT_TYPES
from vox_control.text.subtitles import TRANSCRIPT_FORMATS

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
NDJSON = "application/x-ndjson"
NULL_ONLY = Schema(type=OpenAPIType.NULL)
SSE = "text/event-stream"


class ErrorDetail(msgspec.Struct):
    message: str
    type: str  # invalid_request_error, not_found_error, rate_limit_error, server_error...
    param: str | None = None  # the request field at fault, when one is
    code: str | None = None  # a stable machine-readable code (model_not_found, ...)


class ErrorBody(msgspec.Struct):
    """OpenAI's error envelope: every route answers its errors in this one shape."""

    error: ErrorDetail
    request_id: str | None = None  # also in the X-Request-Id header; the server log has it


_WHY = {
    400: "The request is malformed or a field is invalid (`error.param` names it).",
    401: "The server has an API key and the request did not carry it.",
    403: "A Host this server does not answer to (DNS rebinding), or a write from a web page "
    "whose Origin is not allowed (cross-site request).",
    404: "Unknown model, or a model that is not pulled.",
    409: "The model is busy (serving requests or being pulled) or installed differently.",
    413: "The body or upload is over the server's limit.",
    422: "Well formed, but this server cannot serve it (a GPU-only model on a CPU server, "
    "a sample rate the codec cannot carry).",
    429: "The model's queue is full; `Retry-After` says when to try again.",
    500: "An internal error, or the model failed to load or to run.",
    502: "The model's runner stopped while serving, or a pull source failed.",
    503: "Not available now: offline, or the model's sandbox is not ready.",
    504: "The model's runner stopped answering.",
}
# What a request that runs a model can meet once its fields are valid.
INFERENCE = (400, 404, 413, 422, 429, 502, 503, 504)


def errors(*statuses: int, auth: bool = True) -> dict[int, ResponseSpec]:
    """``responses=`` for a route: each status with the error body. 403 (guard.py's Host and
    Origin checks) and 500 always; 401 unless the route is open without the API key."""
    always = {403, 500} | ({401} if auth else set())
    return {
        status: ResponseSpec(
            data_container=ErrorBody, description=_WHY[status], generate_examples=False
        )
        for status in sorted({*statuses, *always})
    }


def _text(media_type: str | None = None, *, binary: bool = False) -> Schema:
    return Schema(
        type=OpenAPIType.STRING,
        format=OpenAPIFormat.BINARY if binary else None,
        content_media_type=media_type,
    )


def _object() -> Schema:
    return Schema(type=OpenAPIType.OBJECT)


def _string(description: str, enum: tuple[str, ...] | None = None) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, enum=list(enum or []) or None)


def _bool(description: str) -> Schema:
    return Schema(type=OpenAPIType.BOOLEAN, description=description)


def documented(
    content: Mapping[str, Schema] | None = None,
    *,
    description: str | None = None,
    form: Schema | None = None,
    raw: str | None = None,
    one_of_required: tuple[str, ...] = (),
    limits: Mapping[str, Schema] | None = None,
) -> type[Operation]:
    """An ``operation_class`` whose 200 response lists ``content`` (media type -> schema) with
    ``description``, whose body is the multipart ``form`` or raw bytes of media type ``raw``
    (the handler reads the stream itself), or whose JSON body needs one of
    ``one_of_required``; ``limits`` adds the ranges and enums the handler checks to fields
    the body's type declares loosely.
    """

    @dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            ok = (self.responses or {}).get("200")
            if content is not None and isinstance(ok, OpenAPIResponse):
                ok.content = {t: OpenAPIMediaType(schema=s) for t, s in content.items()}
                ok.description = description or ok.description
            if form is not None:
                media = OpenAPIMediaType(schema=form)
                self.request_body = RequestBody(
                    content={"multipart/form-data": media}, required=True
                )
            if raw is not None:
                media = OpenAPIMediaType(schema=_text(raw, binary=True))
                self.request_body = RequestBody(content={raw: media}, required=True)
            body = self.request_body
            if one_of_required and isinstance(body, RequestBody):
                json = body.content.get("application/json")
                if json is not None and isinstance(json.schema, Schema | Reference):
                    # Ollama's older `name` stands in for `model`: one of them is required.
                    either = [
                        Schema(required=[f], properties={f: Schema(min_length=1)})
                        for f in one_of_required
                    ]
                    overlay = Schema(any_of=either, properties=dict(limits or {}) or None)
                    json.schema = Schema(all_of=[json.schema, overlay])

    return DocumentedOperation


SPEECH_OK = (
    "The audio in `response_format` (its media type), streamed as it is synthesized; "
    "with `stream_format=sse`, `speech.audio.delta` events then `speech.audio.done`."
)
TRANSCRIPTION_OK = (
    "The transcript in `response_format`: JSON (json, verbose_json, native), text, srt or "
    "vtt; with `stream=true`, `transcript.text.delta` events then `transcript.text.done`."
)
PULL_OK = (
    "NDJSON progress events ending with `success` (or an `error` event); with "
    "`stream=false`, one JSON answer when the pull is done."
)
SPEECH_CONTENT = {
    **{AUDIO_TYPES[f]: _text(AUDIO_TYPES[f], binary=True) for f in SPEECH_FORMATS},
    SSE: _text(SSE),
}
TRANSCRIPTION_CONTENT: dict[str, Schema] = {
    "application/json": _object(),
    **{t: _text() for f, t in TRANSCRIPT_TYPES.items() if t != "application/json"},
    SSE: _text(SSE),
}
PULL_CONTENT = {"application/json": _object(), NDJSON: _text(NDJSON)}


def transcription_form(*, native: bool) -> Schema:
    """The multipart fields of /v1/audio/transcriptions and translations (native: /api/...)."""
    formats = (*TRANSCRIPT_FORMATS, "native") if native else TRANSCRIPT_FORMATS
    fields: dict[str, Schema | Reference] = {
        "file": Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.BINARY,
            description="The audio: wav, flac, mp3, ogg/opus, webm, m4a and what FFmpeg reads.",
        ),
        "model": _string("The model (default: the server's default STT model)."),
        "language": _string("The spoken language's code (en, de, ...); default: detected."),
        "prompt": _string("Text that guides spelling and style."),
        "response_format": _string(
            "The response's format" + (" (default: native)." if native else " (default: json)."),
            formats,
        ),
        "temperature": Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=1),
        "timestamp_granularities[]": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING, enum=["word", "segment"]),
            description="With verbose_json: word and/or segment timestamps.",
        ),
        "stream": _bool("Server-sent events with the text (json and text formats)."),
        "keep_alive": _string('How long the model stays loaded ("5m", "30s", "-1", "0").'),
    }
    if native:
        fields |= {
            "task": _string("transcribe, or translate to English.", ("transcribe", "translate")),
            "word_timestamps": _bool("Word timestamps in the native response."),
            "vad_filter": _bool("Skip silence with voice activity detection."),
            "beam_size": Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=20),
        }
    return Schema(type=OpenAPIType.OBJECT, required=["file"], properties=fields)


SPEECH_LIMITS = {
    "speed": Schema(minimum=MIN_SPEED, maximum=MAX_SPEED),
    "response_format": Schema(one_of=[Schema(enum=list(SPEECH_FORMATS)), NULL_ONLY]),
    "stream_format": Schema(enum=["audio", "sse"]),
    "sample_rate": Schema(
        one_of=[Schema(type=OpenAPIType.INTEGER, minimum=MIN_RATE, maximum=MAX_RATE), NULL_ONLY]
    ),
}
SPEECH = documented(
    SPEECH_CONTENT,
    description=SPEECH_OK,
    one_of_required=("input", "text"),
    limits=SPEECH_LIMITS,
)
TRANSCRIPTION = documented(
    TRANSCRIPTION_CONTENT, description=TRANSCRIPTION_OK, form=transcription_form(native=False)
)
NATIVE_TRANSCRIPTION = documented(
    TRANSCRIPTION_CONTENT, description=TRANSCRIPTION_OK, form=transcription_form(native=True)
)
PULL = documented(PULL_CONTENT, description=PULL_OK, one_of_required=("model", "name"))
UPLOAD = documented(raw="application/x-tar")
# Bodies that name a model as `model` or as Ollama's older `name`.
MODEL_OR_NAME = documented(one_of_required=("model", "name"))


def _assets_page(**kwargs: Any) -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        **kwargs,
    )


def openapi_config(version: str) -> OpenAPIConfig:
    """The document at /docs/openapi.json and Swagger UI at /docs, with no CDN involved."""
    return OpenAPIConfig(
        title="Vox",
        version=version,
        path=DOCS_PATH,
        render_plugins=[_assets_page(path=["/", "/swagger"])],
    )


# Swagger UI's files as the swagger-ui-bundle-v2 package ships them: the docs work offline.
DOCS_ASSETS: Router = create_static_files_router(
    path=ASSETS_PATH, directories=[swagger_ui_path], name="docs-assets"
)

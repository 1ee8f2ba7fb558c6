"""The Litestar application factory: routes, dependency injection, lifespan, error handlers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.di import Provide
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin

from vox_control import __version__
from vox_control.disconnect import cancel_on_disconnect
from vox_control.guard import cors_config
from vox_control.lazy import preimport
from vox_control.renderers import (
    EXCEPTION_HANDLERS,
    request_id_header,
    request_id_middleware,
)
from vox_control.routes.compat import VoxRuntimeController
from vox_control.routes.forms import UploadBudget
from vox_control.routes.models import ModelsController
from vox_control.routes.native import NativeController
from vox_control.routes.observe import ObserveController
from vox_control.routes.openai import OpenAIController
from vox_control.routes.openai_realtime import openai_realtime
from vox_control.routes.openapi import DOCS_ASSETS, openapi_config
from vox_control.routes.realtime import REALTIME_ROUTES
from vox_control.routes.runtime import RuntimeController
from vox_control.routes.voices import VoicesController
from vox_control.routes.web import WEB_ROUTES
from vox_control.services import Services
from vox_control.sessions.ws_stt import transcription_stream
from vox_control.sessions.ws_tts import speech_stream
from vox_control.settings import Settings
from vox_control.validation import json_body_guard

# Inference answered in one piece: a client that disconnects cancels its request (and the
# runner's work). Streamed answers are cancelled by Litestar itself.
INFERENCE_PATHS = (
    "/api/transcribe",
    "/api/synthesize",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/audio/speech",
)


class VoxApp(Litestar):
    """Litestar without the plugins for model libraries Vox does not use.

    Litestar adds its pydantic and attrs plugins whenever those libraries are importable (the
    dev environment has both), which imports pydantic at every start: ~0.08 s and ~9 MB for
    bodies that are all msgspec Structs here.
    """

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        return [*plugins, MsgspecDIPlugin()]


def create_app(settings: Settings, services: Services | None = None) -> Litestar:
    """Build the app; ``services`` may be injected (tests pass fakes for the seams)."""
    svc = services if services is not None else Services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await svc.start()
        svc.serving.set()
        # The modules the first audio and text need, loaded now that the port is open.
        preimporting = asyncio.create_task(asyncio.to_thread(preimport))
        # What building the app and those imports freed goes back once nothing runs.
        preimporting.add_done_callback(lambda _: svc.heap.idle())
        wyoming = None
        if settings.wyoming:  # one process, one scheduler: Wyoming shares the runners
            # The wyoming package and Vox's sessions on it (~25 ms, ~8 MB) load only here.
            from vox_control.sessions.wyoming_server import WyomingServer

            wyoming = WyomingServer(svc, settings.wyoming, zeroconf=settings.wyoming_zeroconf)
            await wyoming.start()
            svc.session_status["wyoming"] = wyoming.status
        stop_open = svc.metrics.serve_open(settings.metrics_addr) if settings.metrics_addr else None
        try:
            yield
        finally:
            if stop_open is not None:
                await asyncio.to_thread(stop_open)
            if wyoming is not None:
                await wyoming.stop()
            await asyncio.gather(preimporting, return_exceptions=True)
            # Every runner is reaped here, however the server stops (SIGINT, SIGTERM).
            await svc.stop()

    def provide_services() -> Services:
        return svc

    app = VoxApp(
        route_handlers=[
            NativeController,
            OpenAIController,
            VoicesController,
            ModelsController,
            RuntimeController,
            VoxRuntimeController,
            ObserveController,
            transcription_stream,
            speech_stream,
            *REALTIME_ROUTES,
            *WEB_ROUTES,
            openai_realtime,
            DOCS_ASSETS,
        ],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        # Loopback origins and --cors-origins; serve.py's guard refuses the others' writes.
        cors_config=cors_config(settings),
        exception_handlers=EXCEPTION_HANDLERS,
        # Every request and session gets an id: in its response headers, its error bodies and
        # events, and the server log lines about it. Uploads count against the global upload
        # budget; inference answered in one piece is cancelled when its client disconnects.
        middleware=[
            request_id_middleware,
            svc.metrics.middleware,  # by route template, so labels stay bounded
            UploadBudget(settings.max_upload_bytes_total).middleware,
            cancel_on_disconnect(INFERENCE_PATHS),
        ],
        before_send=[request_id_header],
        lifespan=[lifespan],
        request_max_body_size=settings.max_upload_bytes,
        # JSON bodies are depth-checked before any handler decodes them (validation.py).
        before_request=json_body_guard,
        openapi_config=openapi_config(__version__),
        debug=False,
        # Logging is configured once by `vox serve`; Litestar's queue-based default would drop
        # the last lines (runner reaping) when uvicorn re-raises SIGTERM at exit.
        logging_config=None,
    )
    app.state.services = svc
    return app

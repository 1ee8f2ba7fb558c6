"""Run the control plane under uvicorn with one Settings object."""

from __future__ import annotations

import logging
import sys

import uvicorn

from vox_control.app import create_app
from vox_control.settings import Settings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    logging.getLogger("vox").info(
        "vox serving on http://%s:%d (home %s, device %s)",
        settings.host,
        settings.port,
        settings.home,
        settings.resolved_device,
    )
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Streaming responses must not be held back; runners are reaped in the lifespan.
        # SIGTERM drains in-flight requests this long, then the lifespan reaps the runners.
        timeout_graceful_shutdown=max(1, round(settings.drain_timeout)),
        log_config=None,
    )

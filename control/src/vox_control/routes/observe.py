"""Readiness and metrics: GET /api/ready and GET /metrics (liveness is /api/health)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, MediaType, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from vox_control.ready import not_ready
from vox_control.services import Services

# Litestar appends the charset to text types itself: without this cut it said it twice.
_EXPOSITION = "; ".join(p for p in CONTENT_TYPE_LATEST.split("; ") if not p.startswith("charset"))


class ObserveController(Controller):
    tags = ["observability"]  # noqa: RUF012

    @get("/api/ready")
    async def ready(self, services: Services) -> Response[dict[str, Any]]:
        """200 once the store is readable and every --preload model's runner answers; else
        503 with the reason (for a Kubernetes readiness probe, a load balancer)."""
        reason = await not_ready(services)
        if reason is None:
            return Response({"status": "ready"})
        return Response({"status": "not ready", "reason": reason}, status_code=503)

    @get("/metrics", media_type=MediaType.TEXT)
    async def metrics(self, services: Services) -> Response[bytes]:
        """Prometheus text format; the scheduler is read at scrape time, off the event loop."""
        body = await asyncio.to_thread(services.metrics.exposition)
        return Response(body, media_type=_EXPOSITION)

"""Health endpoints for load balancers and orchestrators.

``/livez`` (and ``/healthz``, its older name): the process answers; restart it only if this fails.
``/readyz``: this node can take traffic now (docs/operations.md); route clients only to nodes where it
answers 200. The body names every check and why it fails. ``/metrics``: Prometheus' text format.
Declared with ``@route`` like the API (routes.py), so the OpenAPI document lists them too.
"""

from __future__ import annotations

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..metrics import NodeMetrics
from ..readiness import Readiness
from .bodies import ReadyAnswer, Status
from .routes import PUBLIC, Answer, route

__all__ = ["Health", "MetricsPage"]


class Health:
    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness

    @route("GET", "/livez", "the process answers: restart it only if this fails", auth=PUBLIC)
    async def livez(self, request: web.Request) -> Status:
        return Status("ok")

    @route("GET", "/readyz", "this node can take traffic now (503 names what fails)", auth=PUBLIC, statuses=(200, 503))
    async def readyz(self, request: web.Request) -> Answer[ReadyAnswer]:
        answer = msgspec.convert(self.readiness.json(), ReadyAnswer)
        return Answer(answer, 200 if self.readiness.ready else 503)


class MetricsPage:
    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    @route(
        "GET",
        "/metrics",
        "every metric in Prometheus' text format (docs/operations.md)",
        auth=PUBLIC,
        media="text/plain",
    )
    async def serve_metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.exported)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

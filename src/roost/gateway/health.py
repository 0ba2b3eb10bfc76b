"""Health endpoints for load balancers and orchestrators.

``/livez`` (and ``/healthz``, its older name): the process answers; restart it only if this fails.
``/readyz``: this node can take traffic now (docs/operations.md); route clients only to nodes where it
answers 200. The body names every check and why it fails. ``/metrics``: Prometheus' text format.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..metrics import NodeMetrics
from ..readiness import Readiness

__all__ = ["health_routes", "metrics_endpoint"]

_json: Final = msgspec.json.Encoder()


def health_routes(readiness: Readiness) -> list[web.RouteDef]:
    async def livez(request: web.Request) -> web.Response:
        return web.Response(body=_json.encode({"status": "ok"}), content_type="application/json")

    async def readyz(request: web.Request) -> web.Response:
        status = 200 if readiness.ready else 503
        return web.Response(body=_json.encode(readiness.json()), status=status, content_type="application/json")

    return [web.get("/livez", livez), web.get("/readyz", readyz)]


def metrics_endpoint(metrics: NodeMetrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /metrics`` in Prometheus' text format (docs/operations.md lists every metric)."""

    async def serve_metrics(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return serve_metrics

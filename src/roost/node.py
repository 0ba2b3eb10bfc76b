"""The composition root: build store, bus, service, hub and gateway from Settings, and run them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from .apikeys import ApiKeys, ApiKeyWatch
from .auth import TokenAuthority, load_jwks, load_or_create_secret
from .backends import Backends, open_backends
from .backends.boundary import FAILURES
from .config import Settings
from .fdlimit import Descriptors, raise_fd_limit
from .gateway.connections import ConnectionGuard, GuardedSite
from .gateway.headers import add_security_headers
from .gateway.health import Health, MetricsPage
from .gateway.hosts import HostCheck
from .gateway.http import HttpApi
from .gateway.openapi import ApiDocs
from .gateway.page import Page
from .gateway.routes import bind
from .gateway.websocket import WebSocketEndpoint
from .hub import Hub
from .metrics import NodeMetrics, counted_by_label
from .readiness import Readiness
from .revocation import Revocations, RevocationWatch
from .service import ChatService
from .startup import StartingSite, open_with_retry

__all__ = ["Node", "serve"]

log = logging.getLogger(__name__)


@dataclass
class Node:
    settings: Settings
    backends: Backends
    service: ChatService
    hub: Hub
    tokens: TokenAuthority
    websocket: WebSocketEndpoint
    readiness: Readiness
    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}/ws"


def make_authority(settings: Settings) -> TokenAuthority:
    """Keys from the settings; with none, the data directory's generated secret (development)."""
    public_key = Path(settings.public_key_file).read_text() if settings.public_key_file else None
    jwks = load_jwks(settings.jwks_file) if settings.jwks_file else None
    secret = settings.secret
    if secret is None and public_key is None and jwks is None:
        secret = load_or_create_secret(Path(settings.data_dir))
    return TokenAuthority(secret, public_key=public_key, jwks=jwks, issuer=settings.issuer, audience=settings.audience)


def _export_node_state(
    metrics: NodeMetrics, settings: Settings, websocket: WebSocketEndpoint, readiness: Readiness, guard: ConnectionGuard
) -> None:
    """Gauges read at scrape time: nothing is counted on the paths they describe."""

    def state() -> Iterator[Metric]:
        yield GaugeMetricFamily("roost_connections", "Open WebSocket connections.", len(websocket.sessions))
        yield GaugeMetricFamily(
            "roost_unauthenticated_connections",
            "Open connections that are not an authenticated WebSocket (HTTP, or a WebSocket before its auth).",
            guard.pending,
        )
        yield GaugeMetricFamily("roost_ready", "1 when /readyz answers 200.", 1 if readiness.ready else 0)
        checks = GaugeMetricFamily("roost_readiness_check", "1 when the check's last probe passed.", labels=["check"])
        for name, check in readiness.checks.items():
            checks.add_metric([name], 1 if check.ok else 0)
        yield checks

    metrics.gauge(state)
    metrics.gauge(
        counted_by_label(
            "roost_engine_errors",
            "Failures of a store or bus driver, answered 4503, by engine and exception class (per process).",
            ["engine", "cause"],
            FAILURES,
        )
    )
    metrics.gauge(
        counted_by_label(
            "roost_unauthenticated_closed",
            "Connections (or requests) not authenticated that the connection limits ended, by reason.",
            ["reason"],
            guard.closed,
        )
    )
    if settings.store in (None, "", "sqlite") or (settings.store or "").startswith("sqlite:"):
        metrics.wal_size((settings.store or "").removeprefix("sqlite://") or settings.data_dir)


def _spawn(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in the background, keeping a reference until it ends (asyncio holds tasks weakly)."""
    task = asyncio.ensure_future(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Node]:
    """Run a node until the block exits. ``port=0`` picks a free port (see ``node.port``)."""
    descriptors = raise_fd_limit()
    guard = ConnectionGuard(settings.limits, descriptors.limit)
    guard.start()
    try:
        async with _serve(settings, guard, descriptors) as node:
            yield node
    finally:
        await guard.aclose()


def _log_connection_limits(guard: ConnectionGuard, descriptors: Descriptors) -> None:
    (log.info if descriptors.ok else log.warning)("%s", descriptors.note)
    limits = guard.limits
    log.info(
        "connection limits: %d pending (not authenticated) per node, %s per source address, reserve %d; "
        "idle %.0f s, request head %.0f s, request %.0f s",
        guard.node_cap, guard.source_cap or "no limit", guard.reserve,
        limits.idle_timeout_s, limits.header_timeout_s, limits.request_timeout_s,
    )  # fmt: skip


@asynccontextmanager
async def _serve(settings: Settings, guard: ConnectionGuard, descriptors: Descriptors) -> AsyncIterator[Node]:
    limits = settings.limits
    starting = StartingSite(settings.host, settings.port, guard)
    port = await starting.start()
    _log_connection_limits(guard, descriptors)
    try:
        backends = await open_with_retry(
            lambda: open_backends(settings.store, settings.bus, settings.data_dir), starting
        )
    finally:
        await starting.aclose()
    tokens = make_authority(settings)
    metrics = NodeMetrics()
    service = ChatService(backends.store, backends.directory, backends.bus, limits, metrics)
    hub = Hub(
        backends.bus,
        backends.store,
        head_check_s=limits.head_check_s,
        presence_interval_s=limits.presence_interval_s,
        tally=metrics.tally,
        coalesce_s=limits.coalesce_s,
    )
    await hub.start()
    shedding: set[asyncio.Task[None]] = set()
    readiness = Readiness(
        backends.directory,
        backends.bus,
        interval_s=limits.probe_interval_s,
        timeout_s=limits.probe_timeout_s,
        grace_s=limits.unready_grace_s,
        on_shed=lambda reason: _spawn(shedding, websocket.shed(reason)),
        progress=lambda: {
            "store": metrics.tally.appended_new + metrics.tally.appended_again + metrics.tally.catchup_pages,
            "bus": metrics.tally.bus_payloads,
        },
    )
    revocations = Revocations(backends.directory, backends.bus)
    keys = ApiKeys(backends.directory, backends.bus)
    websocket = WebSocketEndpoint(
        service,
        hub,
        tokens,
        limits,
        settings.allowed_origins,
        readiness,
        revocations=revocations,
        guard=guard,
        keys=keys,
    )
    revocation_watch = RevocationWatch(
        revocations, websocket.close_revoked, limits.revocation_check_s, lambda: bool(websocket.sessions)
    )
    await revocation_watch.start()
    key_watch = ApiKeyWatch(keys, websocket.close_void_keys, limits.revocation_check_s, websocket.key_sessions)
    await key_watch.start()
    readiness.warnings = await backends.store.durability_warnings()
    for warning in readiness.warnings:
        log.warning("UNSAFE for the no-loss promise: %s", warning)
    await readiness.start()
    api = HttpApi(service, tokens, settings.dev_login, settings.admins, revocations, keys)
    hosts = HostCheck(settings.allowed_hosts, settings.dev_login)
    app = web.Application(
        middlewares=[guard.middleware, hosts.middleware, api.errors], client_max_size=limits.max_frame_bytes * 4
    )
    app.on_response_prepare.append(add_security_headers)
    # Every route but /ws comes from a @route declaration: the OpenAPI document lists the same (openapi.py).
    for documented in (api, ApiDocs(), Health(readiness), MetricsPage(metrics), Page()):
        app.add_routes(bind(documented))
    _export_node_state(metrics, settings, websocket, readiness, guard)
    app.add_routes([web.get("/ws", websocket.handle)])
    # aiohttp's own keep-alive timer (an hour by default) only as a backstop behind the guard's bounds.
    keepalive_s = limits.idle_timeout_s + limits.header_timeout_s
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=keepalive_s)
    await runner.setup()
    # A deep accept queue: after a restart every client reconnects at once, and SYNs dropped by a
    # full queue are retried by the kernel only after 1, 3, 7, 15 s (measured: `roost bench`, storm).
    site = GuardedSite(runner, guard, settings.host, port, backlog=4096)
    await site.start()
    node = Node(settings, backends, service, hub, tokens, websocket, readiness, runner, port)
    try:
        yield node
    finally:
        readiness.drain()
        await readiness.aclose()
        await revocation_watch.aclose()
        await key_watch.aclose()
        await websocket.aclose()
        await runner.cleanup()
        await hub.aclose()
        await service.reads.receipts_out.aclose()
        await backends.aclose()

"""The composition root: build store, bus, service, hub and gateway from Settings, and run them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from .apikeys import ApiKeys, ApiKeyWatch
from .attachments import SPOOL, Blobs, open_blobs
from .attachments.links import Links
from .attachments.sweeper import Sweeper
from .auth import TokenAuthority, load_jwks, load_or_create_secret
from .backends import Backends, open_backends
from .backends.boundary import FAILURES
from .config import Settings
from .config_sources import COMPRESSION_NEEDS_AIOHTTP
from .fdlimit import Descriptors, raise_fd_limit
from .gateway.attachments import AttachmentApi
from .gateway.connections import LISTEN_BACKLOG, ConnectionGuard, GuardedSite
from .gateway.consumers import ConsumerApi
from .gateway.deflate import MAX_WINDOW_BITS, MIN_WINDOW_BITS
from .gateway.headers import add_security_headers
from .gateway.health import Health, MetricsPage
from .gateway.hosts import HostCheck
from .gateway.http import HttpApi
from .gateway.openapi import ApiDocs
from .gateway.page import Page
from .gateway.push import PushApi
from .gateway.routes import bind
from .gateway.search import SearchApi
from .gateway.websocket import WebSocketEndpoint
from .gateway.ws_aiohttp import AiohttpWebSocket
from .gateway.ws_picows import PicowsWebSocket
from .hooks.manage import Consumers
from .hooks.supervisor import Supervisor
from .hub import Hub
from .logs import NODE_ID
from .metrics import NodeMetrics, counted_by_label, node_info
from .protocol.errors import UsageError
from .push.dispatcher import Dispatcher, VapidKeySource
from .push.online import Online
from .push.subscriptions import Subscriptions
from .readiness import Readiness
from .retention import RetentionTask
from .revocation import Revocations, RevocationWatch
from .search import SearchIndex, open_search
from .search.indexer import Indexer
from .search.process import IndexerProcess
from .search.worker import embedded
from .service import ChatService
from .service.attachments import DEFAULT_TYPES
from .startup import StartingSite, open_with_retry

if TYPE_CHECKING:
    from .workers.sockets import Place

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
    retention: RetentionTask
    consumers: Supervisor
    push: Dispatcher
    search_index: SearchIndex | None = None
    indexer: Indexer | IndexerProcess | None = None
    blobs: Blobs | None = None
    sweeper: Sweeper | None = None
    ws_port: int | None = None
    """The WebSocket port with ``--ws-transport picows``; None: ``/ws`` is on ``port``."""
    metrics_port: int | None = None
    """The port of this node's own ``/livez``, ``/readyz`` and ``/metrics`` (``--metrics-port-base``), or None."""

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.ws_port or self.port}/ws"


def _link_secret(settings: Settings) -> bytes:
    """The key signed attachment links derive from: the token secret, else the data directory's generated one."""
    return (settings.secret or load_or_create_secret(Path(settings.data_dir))).encode()


def make_authority(settings: Settings) -> TokenAuthority:
    """Keys from the settings; with none, the data directory's generated secret (development)."""
    public_key = Path(settings.public_key_file).read_text() if settings.public_key_file else None
    jwks = load_jwks(settings.jwks_file) if settings.jwks_file else None
    secret = settings.secret
    if secret is None and public_key is None and jwks is None:
        secret = load_or_create_secret(Path(settings.data_dir))
    return TokenAuthority(secret, public_key=public_key, jwks=jwks, issuer=settings.issuer, audience=settings.audience)


def _attachment_types(settings: Settings) -> tuple[str, ...]:
    unknown = sorted(set(settings.attachment_types) - set(DEFAULT_TYPES))
    if unknown:
        raise UsageError(f"unknown attachment types {unknown}: choose among {', '.join(DEFAULT_TYPES)}")
    return settings.attachment_types or DEFAULT_TYPES


def _blob_warning(settings: Settings, blobs: Blobs | None) -> str | None:
    """Local blobs under a store several nodes can share: each node serves only its own uploads."""
    embedded = settings.store in (None, "", "sqlite") or (settings.store or "").startswith("sqlite:")
    if blobs is None or blobs.shared or embedded:
        return None
    return (
        "attachments are kept on this node's disk (--blobs local): with several nodes each serves only the files"
        " uploaded to it; use --blobs s3://BUCKET for scale-out"
    )


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


def _indexes_in_process(settings: Settings, index: SearchIndex) -> bool:
    """The indexer runs in a child process (search/process.py) except when asked not to, with a Kafka store (a
    second process would replay the whole topic into a second replica of the store), and with the embedded store
    under a shared index (the lease lives in the store's file, which only the node writes)."""
    if settings.search_in_process or (settings.store or "").startswith("kafka://"):
        return True
    return index.shared and embedded(settings.store)


def _spawn(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in the background, keeping a reference until it ends (asyncio holds tasks weakly)."""
    task = asyncio.ensure_future(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


@asynccontextmanager
async def serve(settings: Settings, place: Place | None = None) -> AsyncIterator[Node]:
    """Run a node until the block exits. ``port=0`` picks a free port (see ``node.port``). ``place``: this node is
    a worker of ``roost serve --workers N`` (roost/workers/), serving on the listening sockets it was handed."""
    descriptors = raise_fd_limit()
    guard = ConnectionGuard(settings.limits, descriptors.limit)
    guard.start()
    try:
        async with _serve(settings, guard, descriptors, place) as node:
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


async def _metrics_site(
    settings: Settings,
    place: Place | None,
    guard: ConnectionGuard,
    hosts: HostCheck,
    readiness: Readiness,
    metrics: NodeMetrics,
) -> tuple[web.AppRunner, int] | None:
    """``--metrics-port-base``: this node's health and metrics on a port of its own (worker i: base + i, on the
    socket the parent bound), so each worker of one ``roost serve`` can be scraped, not whichever took the
    connection on the shared port."""
    sock = place.metrics if place is not None else None
    if sock is None and (place is not None or settings.metrics_port_base is None):
        return None
    app = web.Application(middlewares=[guard.middleware, hosts.middleware])
    for documented in (Health(readiness), MetricsPage(metrics)):
        app.add_routes(bind(documented))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = settings.metrics_port_base or 0
    await GuardedSite(runner, guard, settings.host, port, sock=sock).start()
    bound = int(runner.addresses[0][1])
    log.info("this node's /livez, /readyz and /metrics also on http://%s:%d", settings.host, bound)
    return runner, bound


@asynccontextmanager
async def _serve(
    settings: Settings, guard: ConnectionGuard, descriptors: Descriptors, place: Place | None
) -> AsyncIterator[Node]:
    limits = settings.limits
    if settings.ws_compression not in ("off", "deflate"):
        raise UsageError(f"ws_compression {settings.ws_compression!r} is not one of off, deflate")
    if settings.ws_compression != "off" and settings.ws_transport == "picows":
        raise UsageError(COMPRESSION_NEEDS_AIOHTTP)  # not faked: the combination does not start (R-WIRE-12)
    if not MIN_WINDOW_BITS <= settings.ws_deflate_window_bits <= MAX_WINDOW_BITS:
        raise UsageError(f"ws_deflate_window_bits {settings.ws_deflate_window_bits} is not 9-15")
    starting = StartingSite(settings.host, settings.port, guard, place.http if place is not None else None)
    port = await starting.start()
    _log_connection_limits(guard, descriptors)
    try:
        backends = await open_with_retry(
            lambda: open_backends(settings.store, settings.bus, settings.data_dir), starting
        )
        try:
            search_index = await open_with_retry(
                lambda: open_search(settings.search, settings.store, settings.data_dir), starting
            )
        except BaseException:
            await backends.aclose()
            raise
        try:
            types = _attachment_types(settings)
            blobs = await open_with_retry(
                lambda: open_blobs(
                    settings.blobs,
                    settings.data_dir,
                    endpoint=settings.s3_endpoint,
                    region=settings.s3_region,
                    access_key=settings.s3_access_key,
                    secret_key=settings.s3_secret_key,
                    spool=SPOOL if place is None else f"{SPOOL}-worker-{place.index}",
                ),
                starting,
            )
        except BaseException:
            if search_index is not None:
                await search_index.aclose()
            await backends.aclose()
            raise
    finally:
        await starting.aclose()
    tokens = make_authority(settings)
    # A worker's series carry its index: the workers of one `roost serve` answer /metrics on one port.
    metrics = NodeMetrics(labels=None if place is None else {"worker": str(place.index)})
    metrics.gauge(node_info(NODE_ID))
    service = ChatService(backends.store, backends.directory, backends.bus, limits, metrics, search_index, blobs, types)
    hub = Hub(
        backends.bus,
        backends.store,
        head_check_s=limits.head_check_s,
        presence_interval_s=limits.presence_interval_s,
        tally=metrics.tally,
        coalesce_s=limits.coalesce_s,
    )
    await hub.start()
    retention = RetentionTask(backends.store, service.retention, limits, metrics)
    await retention.start()
    sweeper = Sweeper(backends.leases, service.attachments, limits.attachment_sweep_s)
    await sweeper.start()
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
    online = Online(backends.bus, lambda: websocket.users(), limits.presence_interval_s)
    websocket = WebSocketEndpoint(
        service,
        hub,
        tokens,
        limits,
        settings.allowed_origins,
        readiness,
        revocations=revocations,
        keys=keys,
        on_user=online.changed,
    )
    await online.start()
    revocation_watch = RevocationWatch(
        revocations, websocket.close_revoked, limits.revocation_check_s, lambda: bool(websocket.sessions)
    )
    await revocation_watch.start()
    key_watch = ApiKeyWatch(keys, websocket.close_void_keys, limits.revocation_check_s, websocket.key_sessions)
    await key_watch.start()
    readiness.warnings = await backends.store.durability_warnings()
    for warning in readiness.warnings:
        log.warning("UNSAFE for the no-loss promise: %s", warning)
    indexer: Indexer | IndexerProcess | None = None
    if search_index is not None:
        if _indexes_in_process(settings, search_index):
            indexer = Indexer(backends.store, backends.bus, search_index, limits, metrics)
        else:
            indexer = IndexerProcess(settings, backends.store, backends.bus, search_index, metrics, readiness.warnings)
        await indexer.start()
    blob_warning = _blob_warning(settings, blobs)
    if blob_warning is not None:
        log.warning("%s", blob_warning)
        readiness.warnings.append(blob_warning)
    await readiness.start()
    api = HttpApi(service, tokens, settings.dev_login, settings.admins, revocations, keys)
    holder = f"{NODE_ID}@{settings.host}:{port}"
    consumers = Consumers(backends.directory, backends.store, backends.bus, limits)
    supervisor = Supervisor(
        leases=backends.leases,
        bus=backends.bus,
        service=service,
        directory=backends.directory,
        store=backends.store,
        hub=hub,
        limits=limits,
        holder=holder,
    )
    push_subs = Subscriptions(backends.directory)
    vapid = VapidKeySource(push_subs, backends.leases, holder, settings.push_subject)
    push = Dispatcher(
        subs=push_subs,
        leases=backends.leases,
        service=service,
        directory=backends.directory,
        store=backends.store,
        hub=hub,
        online=online,
        limits=limits,
        holder=holder,
        key=vapid,
    )
    hosts = HostCheck(settings.allowed_hosts, settings.dev_login)
    picows: PicowsWebSocket | None = None
    ws_port: int | None = None
    if settings.ws_transport == "picows":
        # /ws on a port of its own (the page is told where: Page), the HTTP API and the page on this one.
        picows = PicowsWebSocket(websocket, guard, hosts, port)
        wanted = settings.ws_port if settings.ws_port is not None else (port + 1 if settings.port else 0)
        ws_port = await picows.start(settings.host, wanted, place.ws if place is not None else None)
        log.info("WebSocket endpoint (picows) on ws://%s:%d/ws", settings.host, ws_port)
    app = web.Application(
        middlewares=[guard.middleware, hosts.middleware, api.errors], client_max_size=limits.max_frame_bytes * 4
    )
    app.on_response_prepare.append(add_security_headers)
    # Every route but /ws comes from a @route declaration: the OpenAPI document lists the same (openapi.py).
    push_api = PushApi(api, push_subs, vapid, limits)
    for documented in (
        api,
        ConsumerApi(api, consumers),
        push_api,
        SearchApi(service, api),
        AttachmentApi(service, api, Links(_link_secret(settings))),
        ApiDocs(),
        Health(readiness),
        MetricsPage(metrics),
        Page(ws_port=ws_port),
    ):
        app.add_routes(bind(documented))
    _export_node_state(metrics, settings, websocket, readiness, guard)
    metrics.gauge(supervisor.metrics)
    metrics.gauge(push.metrics)
    if picows is None:
        deflate = settings.ws_compression == "deflate"
        aiohttp_ws = AiohttpWebSocket(websocket, guard, deflate=deflate, window_bits=settings.ws_deflate_window_bits)
        app.add_routes([web.get("/ws", aiohttp_ws.handle)])
    # aiohttp's own keep-alive timer (an hour by default) only as a backstop behind the guard's bounds.
    keepalive_s = limits.idle_timeout_s + limits.header_timeout_s
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=keepalive_s)
    await runner.setup()
    site = GuardedSite(
        runner, guard, settings.host, port, backlog=LISTEN_BACKLOG, sock=place.http if place is not None else None
    )
    await site.start()
    metrics_site = await _metrics_site(settings, place, guard, hosts, readiness, metrics)
    await supervisor.start()  # deliveries begin once the node serves: after the start line's promises
    await push.start()
    node = Node(
        settings,
        backends,
        service,
        hub,
        tokens,
        websocket,
        readiness,
        runner,
        port,
        retention,
        supervisor,
        push,
        search_index,
        indexer,
        blobs,
        sweeper,
        ws_port,
        None if metrics_site is None else metrics_site[1],
    )
    try:
        yield node
    finally:
        readiness.drain()
        await readiness.aclose()
        await revocation_watch.aclose()
        await key_watch.aclose()
        await websocket.aclose()  # first the clients: every request in flight answered (R-CODE-20)
        if picows is not None:
            await picows.aclose()
        # Then the leased jobs, side by side: cursors stored and leases released, each step within a second
        # (an engine that does not answer: the leases expire), so another node takes them over at once.
        jobs = [supervisor.aclose(), push.aclose(), online.aclose(), retention.aclose(), sweeper.aclose()]
        await asyncio.gather(*jobs, *([indexer.aclose()] if indexer is not None else []))
        await runner.cleanup()
        if metrics_site is not None:
            await metrics_site[0].cleanup()
        await hub.aclose()
        await service.reads.receipts_out.aclose()
        if search_index is not None:
            await search_index.aclose()
        if blobs is not None:
            await blobs.aclose()
        await backends.aclose()

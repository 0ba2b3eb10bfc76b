"""Prometheus metrics of one node, served at ``/metrics`` (docs/operations.md lists them all).

Cost is the rule here: the fan-out path (one message to thousands of sockets) only adds 1 to a plain
int (``Tally``); a collector turns those ints into counters when Prometheus scrapes. Per-request work
(a send, an error, a close) uses prometheus-client's counters and histograms, whose cost does not
multiply by the number of receivers. Labels are bounded sets only: codes, engines, check names and
exception class names, never room or user ids.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .protocol.codes import Code

__all__ = ["NodeMetrics", "Tally", "code_label", "counted_by_label", "node_info"]

disable_created_metrics()  # type: ignore[no-untyped-call]  # a `_created` series per counter doubles what is scraped and tells nobody anything

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_KNOWN_CODES: Final = frozenset({1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011} | {int(c) for c in Code})


def code_label(code: int | None) -> str:
    """A close or error code as a label value; anything a peer could invent becomes "other"."""
    if code is None:
        return "none"
    return str(code) if code in _KNOWN_CODES else "other"


class FastHistogram:
    """A histogram as plain numbers: one ``bisect`` and three additions per observation, no lock (the
    event loop is the only writer); exported through prometheus-client's ``HistogramMetricFamily``."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value: Prometheus' "le"
        self.total += value
        self.count += 1

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, n in zip(self.bounds, self.counts, strict=False):
            cumulative += n
            buckets.append((repr(float(bound)), cumulative))
        buckets.append(("+Inf", self.count))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


class Tally:
    """Plain ints for the hot paths; read at scrape time."""

    __slots__ = (
        "appended_again",
        "appended_new",
        "bus_payloads",
        "bus_resets",
        "catchup_messages",
        "catchup_pages",
        "delivered",
    )

    def __init__(self) -> None:
        self.appended_new = 0
        self.appended_again = 0
        """Appends the store answered as a retry of an earlier one (the same client message id)."""
        self.delivered = 0
        """Live messages handed to a connection (one per receiver); catch-up is ``catchup_messages``."""
        self.catchup_pages = 0
        self.catchup_messages = 0
        self.bus_resets = 0
        self.bus_payloads = 0
        """Payloads the hub took from the bus (one per message per node, not per delivery): readiness
        reads it as the bus's sign of progress."""


class NodeMetrics:
    def __init__(self, engine: str = "embedded", labels: Mapping[str, str] | None = None) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        """Where the node's metrics are registered."""
        self.exported = self.registry
        """What ``/metrics`` serves: the registry, or with ``labels`` every one of its series with them added."""
        if labels:
            self.exported = CollectorRegistry(auto_describe=False)
            self.exported.register(_Labelled(self.registry, dict(labels)))
        self.tally = Tally()
        # Per send: plain ints again (a prometheus-client histogram takes a lock per observation, which
        # `roost bench` with py-spy showed as 3 % of the event loop's busy time at the fan-out ceiling).
        self.append_seconds = FastHistogram(_LATENCY_BUCKETS)
        """Time for the store to make one message durable (Store.append)."""
        self.send_ack_seconds = FastHistogram(_LATENCY_BUCKETS)
        """From a send frame's dispatch to its ack being queued for the client (store, then publish)."""
        self.handshakes = Counter(
            "roost_handshakes",
            "WebSocket connection attempts, by outcome.",
            ["result"],
            registry=self.registry,
        )
        self.closes = Counter(
            "roost_connection_closes",
            "WebSocket connections that ended, by close code (4508: slow consumer, 4504: shed, 4509: going away).",
            ["code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "roost_request_errors",
            "Requests answered with an error, by code (4429: rate limited, 4503: store or bus unavailable).",
            ["code", "transport"],
            registry=self.registry,
        )
        self.erased = Counter(
            "roost_messages_erased",
            "Stored messages replaced by their tombstones by an erasure (a deleted text and its edits).",
            registry=self.registry,
        )
        self.retention_trimmed = Counter(
            "roost_retention_trimmed",
            "Messages the retention task dropped on this node, by the rule that dropped them (count, age).",
            ["rule"],
            registry=self.registry,
        )
        self.retention_passes = Counter(
            "roost_retention_passes",
            "Passes of the retention task this node made while holding its lease (one node at a time).",
            registry=self.registry,
        )
        self._gauges: list[Callable[[], Iterator[Metric]]] = []
        self.registry.register(_TallyCollector(self))

    def gauge(self, source: Callable[[], Iterator[Metric]]) -> None:
        """Add metrics computed at scrape time (connections, readiness, WAL size)."""
        self._gauges.append(source)

    def wal_size(self, data_dir: str) -> None:
        """Export the embedded store's WAL size: a WAL that keeps growing means checkpoints cannot run."""
        wal = Path(data_dir) / "roost.sqlite3-wal"

        def source() -> Iterator[Metric]:
            size = os.path.getsize(wal) if wal.exists() else 0
            yield GaugeMetricFamily("roost_sqlite_wal_bytes", "Size of the embedded store's write-ahead log.", size)

        self.gauge(source)


class _Labelled(Collector):
    """Every series of ``inner`` with ``labels`` added, at scrape time: the workers of one ``roost serve --workers N``
    answer ``/metrics`` on one port, each with ``worker="<i>"`` on its series, so a scraper tells them apart."""

    def __init__(self, inner: CollectorRegistry, labels: dict[str, str]) -> None:
        self.inner = inner
        self.labels = labels

    def collect(self) -> Iterator[Metric]:
        for metric in self.inner.collect():  # built anew by every collect: changing its samples touches nothing else
            metric.samples = [sample._replace(labels={**self.labels, **sample.labels}) for sample in metric.samples]
            yield metric


def node_info(node: str) -> Callable[[], Iterator[Metric]]:
    """``roost_node_info{node="<id>"} 1``: the node id of the log lines and ``/readyz``, for ``NodeMetrics.gauge``."""

    def source() -> Iterator[Metric]:
        family = GaugeMetricFamily("roost_node_info", "Always 1; node: this process's node id.", labels=["node"])
        family.add_metric([node], 1)
        yield family

    return source


K = TypeVar("K", bound=tuple[str, ...])


def counted_by_label(
    name: str, documentation: str, labels: list[str], counts: Mapping[K, int]
) -> Callable[[], Iterator[Metric]]:
    """A counter family read from a mapping of label values to counts, for ``NodeMetrics.gauge``."""

    def source() -> Iterator[Metric]:
        family = CounterMetricFamily(name, documentation, labels=labels)
        for values, count in sorted(counts.items()):
            family.add_metric(list(values), count)
        yield family

    return source


class _TallyCollector(Collector):
    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        tally, metrics = self.metrics.tally, self.metrics
        appended = CounterMetricFamily(
            "roost_messages_appended",
            "Appends that reached the store, by whether the store found them to be a retry (duplicate).",
            labels=["duplicate"],
        )
        appended.add_metric(["false"], tally.appended_new)
        appended.add_metric(["true"], tally.appended_again)
        yield appended
        yield metrics.append_seconds.family(
            "roost_store_append_seconds", "Time for the store to make one message durable (Store.append)."
        )
        yield metrics.send_ack_seconds.family(
            "roost_send_ack_seconds",
            "From a send frame's dispatch to its ack being queued for the client (store, then publish).",
        )
        yield CounterMetricFamily(
            "roost_messages_delivered", "Live messages handed to connections (each receiver counts).", tally.delivered
        )
        yield CounterMetricFamily(
            "roost_catchup_pages", "Pages read from the store to catch a connection up.", tally.catchup_pages
        )
        yield CounterMetricFamily(
            "roost_catchup_messages", "Messages read from the store to catch a connection up.", tally.catchup_messages
        )
        yield CounterMetricFamily(
            "roost_bus_resets", "Times the bus reported it may have lost messages (a reconnect).", tally.bus_resets
        )
        for source in self.metrics._gauges:
            yield from source()

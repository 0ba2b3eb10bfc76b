"""``/metrics`` is Prometheus' text format, parsed by prometheus_client's own parser, and its numbers
follow what happened on the node: connections, handshakes, appends (and retries), deliveries, errors
by code, closes by code, send->ack and append latencies, readiness, the embedded store's WAL."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from roost.chaos.infra import wait_until
from roost.client import RequestFailed, connect
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.types import Message


async def scrape(node: Node) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    async with aiohttp.ClientSession() as http, http.get(node.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_follow_what_the_node_did(embedded_node: Node) -> None:
    node = embedded_node
    alice = connect(node.ws_url, node.tokens.issue("alice"))
    bob = connect(node.ws_url, node.tokens.issue("bob"))
    await alice.start()
    await bob.start()
    try:
        await alice.create("m")
        await bob.join("m")
        await alice.subscribe("m", after=0)
        await bob.subscribe("m", after=0)
        for i in range(10):
            await alice.send("m", f"hello {i}", cmid=f"c{i}")
        again = await alice.send("m", "hello 0", cmid="c0")  # a retry: the original comes back
        assert again.duplicate
        with pytest.raises(RequestFailed):
            await alice.send("nowhere", "lost?")
        got = 0
        async with asyncio.timeout(10):
            async for item in bob:
                if isinstance(item, Message) and item.kind == "text":
                    got += 1
                    if got == 10:
                        break

        text, samples = await scrape(node)
        assert value(samples, "roost_connections") == 2
        assert value(samples, "roost_handshakes_total", result="accepted") == 2
        assert value(samples, "roost_messages_appended_total", duplicate="false") == 10
        assert value(samples, "roost_messages_appended_total", duplicate="true") == 1
        assert value(samples, "roost_send_ack_seconds_count") == 11
        assert value(samples, "roost_store_append_seconds_count") == 11
        assert value(samples, "roost_messages_delivered_total") >= 20  # ten texts to two connections
        assert value(samples, "roost_request_errors_total", code="4404", transport="websocket") == 1
        assert value(samples, "roost_ready") == 1
        assert value(samples, "roost_readiness_check", check="store") == 1
        assert value(samples, "roost_readiness_check", check="bus") == 1
        assert value(samples, "roost_sqlite_wal_bytes") > 0

        # Conventions: one prefix, counters end in _total, times in seconds, no room or user in a label.
        names = {name for name, _ in samples}
        assert all(name.startswith("roost_") for name in names if not name.startswith(("python_", "process_")))
        assert not re.search(r'(room|user)="', text)
        assert "alice" not in text and '"m"' not in text
    finally:
        await bob.aclose()

    async def bob_gone() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        _, samples = await scrape(node)
        return samples if value(samples, "roost_connections") == 1 else None

    samples = await wait_until("bob's close seen by the node", bob_gone)
    assert value(samples, "roost_connection_closes_total", code="1000") == 1
    await alice.aclose()


async def test_http_errors_are_counted_by_code(embedded_node: Node) -> None:
    async with aiohttp.ClientSession() as http, http.get(embedded_node.url + "/api/rooms/x/messages") as resp:
        assert resp.status == 401
    _, samples = await scrape(embedded_node)
    assert value(samples, "roost_request_errors_total", code="4401", transport="http") == 1


async def test_the_operations_doc_lists_exactly_the_metrics_served(embedded_node: Node) -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(roost_\w+)` \|", doc, re.M))
    text, _ = await scrape(embedded_node)
    served = {f.name + ("_total" if f.type == "counter" else "") for f in text_string_to_metric_families(text)}
    assert documented == served


def test_fast_histogram_buckets_are_prometheus_le_buckets() -> None:
    from roost.metrics import FastHistogram

    h = FastHistogram((0.1, 0.5, 1.0))
    for v in (0.05, 0.1, 0.3, 0.5, 0.7, 2.0):
        h.observe(v)
    family = h.family("roost_x_seconds", "x")
    got = {s.labels.get("le", s.name): s.value for s in family.samples}
    assert got["0.1"] == 2 and got["0.5"] == 4 and got["1.0"] == 5 and got["+Inf"] == 6  # value == bound counts in it
    assert got["roost_x_seconds_count"] == 6 and abs(got["roost_x_seconds_sum"] - 3.65) < 1e-9


async def test_metrics_port_base_serves_health_and_metrics_on_a_port_of_their_own(tmp_path: Path) -> None:
    """``--metrics-port-base`` on a single process: /livez, /readyz and /metrics also on a port of their own (the
    API is not there), unlabelled, with ``roost_node_info`` naming the node id that /readyz says."""
    settings = Settings(port=0, data_dir=str(tmp_path), metrics_port_base=0, search="off")
    async with serve(settings) as node, aiohttp.ClientSession() as http:
        assert node.metrics_port is not None and node.metrics_port != node.port
        own = f"http://127.0.0.1:{node.metrics_port}"
        async with http.get(own + "/readyz") as resp:
            assert resp.status == 200
            ready = await resp.json()
        async with http.get(own + "/metrics") as resp:
            text = await resp.text()
        assert f'roost_node_info{{node="{ready["node"]}"}} 1.0' in text
        assert "worker=" not in text
        async with http.post(own + "/api/login", json={"name": "alice"}) as resp:
            assert resp.status == 404

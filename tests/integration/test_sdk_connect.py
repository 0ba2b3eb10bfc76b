"""The SDK's connection lifecycle: a clear error when nothing answers, nothing left open after a refusal,
and a reconnect delay that starts from the shortest one again after each healthy connection."""

from __future__ import annotations

import asyncio
import time

import pytest

from roost.chaos.infra import free_port, wait_until
from roost.client import ConnectionLost, RequestFailed, connect
from roost.node import Node
from roost.protocol.codes import Code

from .test_sdk import drop_connections


async def test_connect_where_nothing_listens_fails_in_time_with_a_clear_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    t0 = time.monotonic()
    with pytest.raises(ConnectionLost) as failed:
        async with connect(url, "any-token", start_timeout_s=1.0):
            pass
    assert time.monotonic() - t0 < 3.0
    assert url in failed.value.reason and "within 1 s" in failed.value.reason
    assert "(last error: ClientConnectorError: Cannot connect to host" in failed.value.reason


async def test_a_refused_token_leaves_no_session_open(embedded_node: Node) -> None:
    client = connect(embedded_node.ws_url, "not-a-token")
    with pytest.raises(RequestFailed) as refused:
        await client.start()
    assert refused.value.code is Code.UNAUTHORIZED
    assert client._http is not None and client._http.closed  # aiohttp would warn "Unclosed client session"


async def test_the_reconnect_delay_resets_after_a_healthy_connection(embedded_node: Node) -> None:
    """Eight drops of a client that was healthy in between: each reconnect takes the first delay again
    (at most ``initial_backoff_s``), not 0.1, 0.2, 0.4 ... 5 s as when the reset was unreachable."""
    token = embedded_node.tokens.issue("alice")
    async with connect(embedded_node.ws_url, token, initial_backoff_s=0.1, max_backoff_s=5.0) as alice:
        gaps = []
        for _ in range(8):
            # Connected (welcomed): healthy, as the SDK tells it, whose reset follows ``connected``.
            t0 = time.monotonic()
            await drop_connections(embedded_node, "alice")
            await wait_until("alice saw the drop", lambda: not alice.connected.is_set(), every_s=0.005)
            await asyncio.wait_for(alice.connected.wait(), 10)
            gaps.append(time.monotonic() - t0)
        assert alice.reconnects == 8
        assert max(gaps) < 0.5, gaps

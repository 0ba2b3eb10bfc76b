"""roost.js reading a room of 16 KiB messages against a real server: gap repair follows byte-bounded pages."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from ..integration.procs import ServerProcess
from ..scripted_peer import dropping_relay

LAST = 302
"""Two joins, then 300 messages of 16 KiB."""

SCRIPT = """async ({ ws, bob, last }) => {
  const { RoostClient } = await import("/roost.js");
  const b = new RoostClient({ url: ws, token: bob, namespace: "big" });
  const seqs = [];
  const states = [];
  b.on("state", (s) => states.push(s.state));
  const done = new Promise((resolve) => b.on("message", (m) => {
    if (m.room !== "big") return;
    seqs.push(m.seq);
    if (m.seq === last) resolve();
  }));
  b.start();
  await b.subscribe("big", { after: 0 });
  await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 30000))]);
  // The connection that carried the pages still answers (a 4508 would have closed it right after them).
  const pong = await Promise.race([
    b.ping().then(() => "pong", (e) => `failed: ${e}`),
    new Promise((resolve) => setTimeout(() => resolve("no answer"), 5000)),
  ]);
  b.close();
  return { seqs, states, pong };
}"""


async def _token(http: aiohttp.ClientSession, server: ServerProcess, name: str) -> str:
    async with http.post(server.url + "/api/login", json={"name": name}) as resp:
        token: str = (await resp.json())["token"]
        return token


async def test_roost_js_fills_a_gap_of_16_kib_messages_page_by_page(server: ServerProcess, browser: Any) -> None:
    """[R-CLIENT-50] roost.js behind a relay that loses 280 messages of 16 KiB fills the gap with ``history``
    reads of ``historyPage`` (100) that come back in pages of 256 KiB, reading on while a page ends below
    its ``head``: every message once, in order, and the connection never drops (a 4.5 MB page closed it
    with 4508 before pages were bounded by bytes)."""
    async with aiohttp.ClientSession() as http:
        alice, bob = await _token(http, server, "alice"), await _token(http, server, "bob")
        async with http.post(
            server.url + "/api/rooms", json={"room": "big"}, headers={"Authorization": f"Bearer {alice}"}
        ):
            pass
        async with http.post(server.url + "/api/rooms/big/join", headers={"Authorization": f"Bearer {bob}"}) as resp:
            assert resp.status == 200
        async with http.ws_connect(server.ws_url) as ws:
            await ws.send_str(json.dumps({"type": "auth", "token": alice}))
            await ws.receive(timeout=10)
            for i in range(300):
                await ws.send_str(json.dumps({"type": "send", "room": "big", "cmid": f"b{i}", "body": "x" * 16384}))
            acks = 0
            while acks < 300:
                msg = await ws.receive(timeout=30)
                acks += sum(json.loads(part)["type"] == "ack" for part in msg.data.split("\n"))
    requests: list[dict[str, Any]] = []

    def lost(frame: dict[str, Any]) -> bool:
        return frame.get("type") == "msg" and 20 <= frame.get("seq", 0) <= 299

    async with dropping_relay(server.ws_url, lost, requests, pages=server.url) as url:
        page = await (await browser.new_context()).new_page()
        # Any page of the relay's origin (served from the server), to import /roost.js from: the server's
        # Content-Security-Policy lets the page open a WebSocket to its own origin only.
        await page.goto(url.replace("ws://", "http://").removesuffix("/ws") + "/roost.css")
        out = await page.evaluate(SCRIPT, {"ws": url, "bob": bob, "last": LAST})
    assert out["seqs"] == list(range(1, LAST + 1))
    assert out["pong"] == "pong" and "reconnecting" not in out["states"], out
    reads = [f for f in requests if f["type"] == "history"]
    assert len(reads) >= 15 and all(f["limit"] == 100 for f in reads)  # roost.js's historyPage

"""roost.js's protocol semantics against a scripted fake server (tests/browser/client_semantics.js):
cursors, dedupe and gap filling, the outbox across reconnects and reloads, 4429/4413/4410/4403/4401,
backoff. Deterministic and fast; test_web.py covers the same paths end to end against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..integration.procs import ServerProcess

SCRIPT = (Path(__file__).parent / "client_semantics.js").read_text(encoding="utf-8")


async def test_client_semantics(server: ServerProcess, browser: Any) -> None:
    """[R-THREAD-6] Among the rest, a reply's ``reply_to`` and ``thread`` go with its send, are kept in the persisted
    outbox across a reload and resent with it, and its own ``rich`` message coming back completes it."""
    page = await (await browser.new_context()).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(server.url + "/roost.css")  # any page of the origin, to import /roost.js from
    try:
        checks = await asyncio.wait_for(page.evaluate(SCRIPT), 30)
    except TimeoutError:
        done = await page.evaluate("window.__roostChecks")
        raise AssertionError(f"the script stalled after {done[-1][0] if done else 'the start'}") from None
    failed = [f"{name}: {detail}" for name, ok, detail in checks if not ok]
    assert not failed, "\n".join(failed)
    assert len(checks) >= 40 and not errors


ROOMS_SCRIPT = """async ({ ws, alice, bob }) => {
  const { RoostClient, RequestFailed } = await import("/roost.js");
  const a = new RoostClient({ url: ws, token: alice, namespace: "a" });
  const b = new RoostClient({ url: ws, token: bob, namespace: "b" });
  a.start(); b.start();
  const out = {};
  await a.create("js-plans", "private");
  out.refused = await b.join("js-plans").then(() => 0, (e) => (e instanceof RequestFailed ? e.code : -1));
  await a.moderate("invite", "js-plans", "bob");
  await b.join("js-plans");
  await a.setRole("js-plans", "bob", "admin");
  out.dm = (await a.dm("bob")).room;
  const left = new Promise((resolve) => b.on("left", ({ room, code }) => resolve([room, code])));
  await b.subscribe("js-plans");
  await a.moderate("kick", "js-plans", "bob");
  out.left = await left;
  try { a.moderate("launch", "js-plans", "bob"); out.bad = "accepted"; } catch (e) { out.bad = e.name; }
  a.close(); b.close();
  return out;
}"""


async def test_rooms_through_roost_js(server: ServerProcess, browser: Any) -> None:
    """create(kind), dm, moderate and setRole against the real server; a kick ends the room with "left"."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        tokens = {}
        for name in ("alice", "bob"):
            async with http.post(server.url + "/api/login", json={"name": name}) as resp:
                tokens[name] = (await resp.json())["token"]
    page = await (await browser.new_context()).new_page()
    await page.goto(server.url + "/roost.css")
    ws = server.url.replace("http://", "ws://") + "/ws"
    out = await asyncio.wait_for(page.evaluate(ROOMS_SCRIPT, {"ws": ws, **tokens}), 30)
    assert out == {"refused": 4404, "dm": "dm:alice:bob", "left": ["js-plans", 4403], "bad": "FrameError"}

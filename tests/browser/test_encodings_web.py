"""roost.js in Chromium with ``encoding: "msgpack"`` beside a JSON client, against a real server; and over a
server with ``--ws-compression deflate``, where the browser's own permessage-deflate offer is taken."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from ..integration.procs import ServerProcess

SCRIPT = """async ({ ws, alice, bob }) => {
  const { RoostClient, RequestFailed } = await import("/roost.js");
  const a = new RoostClient({ url: ws, token: alice, namespace: "a", encoding: "msgpack" });
  const b = new RoostClient({ url: ws, token: bob, namespace: "b" });
  const got = { a: [], b: [] };
  const arrived = (who, n) => new Promise((resolve) => {
    const check = () => { if (got[who].length >= n) resolve(); };
    (who === "a" ? a : b).on("message", (m) => {
      if (m.kind === "text") got[who].push([m.seq, m.sender, m.body]);
      check();
    });
  });
  const aHas = arrived("a", 2), bHas = arrived("b", 2);
  a.start(); b.start();
  await a.create("mp-room");
  await b.join("mp-room");
  await a.subscribe("mp-room", { after: 0 });
  await b.subscribe("mp-room", { after: 0 });
  const sentA = await a.send("mp-room", "from msgpack é\\nline");
  const sentB = await b.send("mp-room", "from json");
  await Promise.all([aHas, bHas]);
  const page = await a.history("mp-room", { after: 0, limit: 10 });
  const refused = await a.create("mp-room").then(() => 0, (e) => (e instanceof RequestFailed ? e.code : -1));
  const out = {
    protocols: [a._ws.protocol, b._ws.protocol],
    binaryType: a._ws.binaryType,
    extensions: [a._ws.extensions, b._ws.extensions],
    acks: [sentA.seq, sentB.seq],
    a: got.a, b: got.b,
    history: page.messages.filter((m) => m.kind === "text").map((m) => m.body),
    refused,
  };
  a.close(); b.close();
  return out;
}"""


async def _tokens(url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        tokens = {}
        for name in ("alice", "bob"):
            async with http.post(url + "/api/login", json={"name": name}) as resp:
                tokens[name] = (await resp.json())["token"]
    return tokens


async def _run(url: str, ws: str, browser: Any) -> tuple[dict[str, Any], list[str]]:
    tokens = await _tokens(url)
    page = await (await browser.new_context()).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    # The chat page: its Content-Security-Policy lets it connect to the WebSocket (on the picows port if there is one).
    await page.goto(url + "/")
    out: dict[str, Any] = await asyncio.wait_for(page.evaluate(SCRIPT, {"ws": ws, **tokens}), 30)
    assert not errors, errors
    return out, fetched


def _check(out: dict[str, Any], fetched: list[str]) -> None:
    seq_a, seq_b = out["acks"]
    expected = [[seq_a, "alice", "from msgpack é\nline"], [seq_b, "bob", "from json"]]
    assert out["a"] == expected and out["b"] == expected, out
    assert out["history"] == ["from msgpack é\nline", "from json"]
    assert out["protocols"] == ["roost.v1.msgpack", ""] and out["binaryType"] == "arraybuffer", out
    assert out["refused"] == 4409
    assert any(u.endswith("/vendor/msgpack/Encoder.mjs") for u in fetched), fetched


async def test_the_web_sdk_speaks_msgpack_beside_json(server: ServerProcess, browser: Any) -> None:
    """[R-WIRE-9] [R-WIRE-10] ``new RoostClient({encoding: "msgpack"})`` asks for ``roost.v1.msgpack``, loads the
    vendored codec, and sends, receives, reads history and gets error codes in MessagePack, beside a JSON client in
    the same room: both see the same messages, in the same order."""
    out, fetched = await _run(server.url, server.ws_url, browser)
    _check(out, fetched)
    assert out["extensions"] == ["", ""]  # the server's default: no compression, whatever the browser offers


async def test_the_browser_compresses_when_the_server_allows_it(tmp_path: Path, browser: Any) -> None:
    """[R-WIRE-12] On a server with ``--ws-compression deflate`` the browser's own permessage-deflate offer is
    accepted (its WebSocket reports the extension, with the server's window of ``--ws-deflate-window-bits``), in
    both encodings, and the session works end to end."""
    flags = ("--ws-transport", "aiohttp", "--ws-compression", "deflate", "--ws-deflate-window-bits", "12")
    proc = ServerProcess(tmp_path / "data", None, *flags)
    await proc.start()
    try:
        out, fetched = await _run(proc.url, proc.url.replace("http://", "ws://") + "/ws", browser)
    finally:
        proc.stop()
    _check(out, fetched)
    for extension in out["extensions"]:
        assert extension.startswith("permessage-deflate") and "server_max_window_bits=12" in extension, extension

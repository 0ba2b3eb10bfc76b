"""Token revocation: a banned user's token stops working at once on every node, open connections included."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from roost.auth import load_or_create_secret
from roost.chaos.infra import wait_until
from roost.cli import main
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.revocation import READER, ROOM_PREFIX

from ..conftest import with_limits

ADMIN = "root"


async def call(node: Node, method: str, path: str, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.request(method, node.url + path, headers=headers) as r:
        return r.status, await r.json()


class Conn:
    """One WebSocket authenticated with a given token (or refused: ``first`` is then the error)."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, first: dict[str, Any]) -> None:
        self.http, self.ws, self.first = http, ws, first

    @classmethod
    async def open(cls, node: Node, token: str, *, in_url: bool = False) -> Conn:
        http = aiohttp.ClientSession()
        if in_url:
            ws = await http.ws_connect(f"{node.ws_url}?token={token}")
        else:
            ws = await http.ws_connect(node.ws_url)
            await ws.send_str(json.dumps({"type": "auth", "token": token, "id": "a"}))
        msg = await ws.receive(timeout=5)
        return cls(http, ws, json.loads(msg.data))

    async def ended(self) -> tuple[list[dict[str, Any]], int | None]:
        """Every frame until the server closes the socket, and the close code."""
        frames = []
        while True:
            msg = await self.ws.receive(timeout=10)
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return frames, int(msg.data)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return frames, self.ws.close_code
            frames += [json.loads(part) for part in msg.data.split("\n") if part]

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


async def refused_everywhere(node: Node, token: str) -> None:
    """HTTP, the auth frame and ``?token=`` all answer 4401 to ``token``."""
    status, body = await call(node, "GET", "/api/rooms", token)
    assert status == 401 and body["error"]["code"] == Code.UNAUTHORIZED and "revoked" in body["error"]["reason"]
    for in_url in (False, True):
        conn = await Conn.open(node, token, in_url=in_url)
        assert conn.first["type"] == "error" and conn.first["code"] == Code.UNAUTHORIZED, conn.first
        _, code = await conn.ended()
        assert code == Code.UNAUTHORIZED
        await conn.close()


async def accepted(node: Node, token: str) -> None:
    status, body = await call(node, "GET", "/api/rooms", token)
    assert status == 200, body
    conn = await Conn.open(node, token)
    assert conn.first["type"] == "welcome", conn.first
    await conn.close()


async def test_a_revoked_token_stops_at_once_on_every_node(shared: Settings) -> None:
    """[R-SEC-60] [R-AUTH-60] An admin revokes a user's tokens through one node: from the moment the call returns, the
    other node refuses the old token over HTTP, the auth frame and ``?token=`` (4401), and closes the user's open
    connection with an error 4401 and close code 4401 (the bus notice: the periodic check is an hour away here);
    a token issued after the revocation, and other users' tokens, keep working."""
    settings = with_limits(replace(shared, admins=(ADMIN,)), revocation_check_s=3600.0)
    async with serve(settings) as one, serve(replace(settings, data_dir=settings.data_dir + "-2")) as two:
        old = one.tokens.issue("mallory")
        bob = one.tokens.issue("bob")
        await accepted(two, old)
        open_conn = await Conn.open(two, old)
        bobs_conn = await Conn.open(two, bob)
        assert open_conn.first["type"] == "welcome"

        status, answer = await call(one, "POST", "/api/admin/users/mallory/revoke-tokens", one.tokens.issue(ADMIN))
        assert status == 200 and answer["user"] == "mallory" and answer["revoked_before"] >= time.time() - 5

        await refused_everywhere(two, old)
        await refused_everywhere(one, old)
        frames, code = await asyncio.wait_for(open_conn.ended(), 10)
        assert code == Code.UNAUTHORIZED
        assert any(f.get("code") == Code.UNAUTHORIZED and "revoked" in f.get("reason", "") for f in frames), frames
        await open_conn.close()

        # A token dated after the revoked second (tokens are dated in whole seconds, and never in the future).
        await wait_until("the next second", lambda: time.time() >= answer["revoked_before"] + 1)
        fresh = one.tokens.issue("mallory")
        await accepted(two, fresh)
        await accepted(two, bob)
        assert not bobs_conn.ws.closed
        await bobs_conn.close()


async def test_revocation_on_the_embedded_node_the_cli_and_the_backstop(embedded_settings: Settings) -> None:
    """[R-SEC-60] [R-AUTH-60] [R-SEC-61] On the embedded node: only an administrator may revoke (4403); ``roost
    revoke USER`` voids the user's tokens and closes the open connection; a token without ``iat`` is void once its
    user is revoked; and a revocation whose bus notice never came (written to the Directory directly) closes the
    connection at the next periodic check."""
    settings = with_limits(replace(embedded_settings, admins=(ADMIN,)), revocation_check_s=0.3)
    async with serve(settings) as node:
        secret = load_or_create_secret(Path(settings.data_dir))
        no_iat = jwt.encode({"sub": "mallory", "exp": int(time.time()) + 600, "iss": "roost"}, secret, "HS256")
        old = node.tokens.issue("mallory")
        await accepted(node, no_iat)
        status, body = await call(node, "POST", "/api/admin/users/mallory/revoke-tokens", node.tokens.issue("eve"))
        assert status == 403 and body["error"]["code"] == Code.FORBIDDEN
        await accepted(node, old)

        conn = await Conn.open(node, old)
        command = ["revoke", "mallory", "--server", node.url, "--data-dir", settings.data_dir]
        await asyncio.to_thread(main, command)
        _, code = await asyncio.wait_for(conn.ended(), 10)
        assert code == Code.UNAUTHORIZED
        await conn.close()
        await refused_everywhere(node, old)
        await refused_everywhere(node, no_iat)

        # The backstop: a later revocation of "zed" written where every node reads it, but never announced.
        zed = node.tokens.issue("zed")
        conn = await Conn.open(node, zed)
        await node.backends.directory.mark_read(ROOM_PREFIX + "zed", READER, int(time.time()))
        _, code = await asyncio.wait_for(conn.ended(), 10)
        assert code == Code.UNAUTHORIZED
        await conn.close()
        await refused_everywhere(node, zed)

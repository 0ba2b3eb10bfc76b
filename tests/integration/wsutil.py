"""A raw WebSocket test client: speaks the wire protocol by hand, to test the server, not the SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from roost.node import Node


class Raw:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.http = http
        self.frames: list[dict[str, Any]] = []
        self.skip_types: set[str] = {"presence"}
        """Ephemeral frames most tests are not about; tests of presence clear this."""

    @classmethod
    async def open(cls, node: Node, user: str, *, autoping: bool = True) -> Raw:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(node.ws_url, autoping=autoping, max_msg_size=64 * 1024 * 1024)
        raw = cls(ws, http)
        await raw.send({"type": "auth", "token": node.tokens.issue(user)})
        welcome = await raw.recv()
        assert welcome["type"] == "welcome", welcome
        return raw

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        elif isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_str(json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        while not self.frames:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket closed: {msg.type} {self.ws.close_code}")
            parts = (json.loads(part) for part in msg.data.split("\n") if part)
            self.frames.extend(f for f in parts if f.get("type") not in self.skip_types)
        return self.frames.pop(0)

    async def until(self, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
        """Skip frames until one matches ``pred``; return it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(timeout=max(0.01, left))
            if pred(frame):
                return frame

    async def request(self, frame: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        await self.send(frame)
        ref = frame["id"]
        return await self.until(lambda f: f.get("ref") == ref, timeout)

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()

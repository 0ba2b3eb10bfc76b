"""Contract point 5: an acked message survives ``kill -9`` of the server, and clients end exact."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp

from roost.chaos.infra import wait_until
from roost.client import Client, Sent, connect
from roost.protocol.types import Message

from .procs import ServerProcess


def token(data_dir: Path, user: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "roost", "token", user, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


async def read_all(url: str, tok: str, room: str) -> list[dict]:  # type: ignore[type-arg]
    out: list[dict] = []  # type: ignore[type-arg]
    after = 0
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {tok}"}) as http:
        while True:
            async with http.get(f"{url}/api/rooms/{room}/messages?after={after}&limit=500") as resp:
                page = await resp.json()
            out.extend(page["messages"])
            if not page["has_more"]:
                return out
            after = out[-1]["seq"]


async def test_kill_9_mid_stream_loses_no_acked_message(tmp_path: Path) -> None:
    """[R-SEND-4] An acked message survives ``kill -9`` of the server in the middle of a stream of sends."""
    data = tmp_path / "data"
    server = ServerProcess(data)
    await server.start()
    try:
        alice_token, bob_token = token(data, "alice"), token(data, "bob")
        async with (
            connect(server.ws_url, alice_token, initial_backoff_s=0.02, max_backoff_s=0.2) as alice,
            connect(server.ws_url, bob_token, initial_backoff_s=0.02, max_backoff_s=0.2) as bob,
        ):
            await alice.create("r")
            await bob.join("r")
            await bob.subscribe("r", after=0)
            total = 400
            acks: list[Sent] = []
            killed = asyncio.Event()

            async def sender() -> None:
                window = asyncio.Semaphore(8)  # several sends in flight, as a busy client has

                async def one(i: int) -> None:
                    async with window:
                        acks.append(await alice.send("r", f"m{i}", cmid=f"alice-{i}"))

                await asyncio.gather(*(one(i) for i in range(total)))

            async def chaos() -> None:
                await wait_until("a third acked", lambda: len(acks) >= total // 3, 60, every_s=0.01)
                server.kill()
                killed.set()
                await asyncio.sleep(0.3)  # the subject: down for a while, with sends and a subscriber waiting
                await server.start()

            received: list[Message] = []

            async def receiver(client: Client) -> None:
                async for item in client:
                    if isinstance(item, Message) and item.kind == "text":
                        received.append(item)
                        if len(received) == total:
                            return

            await asyncio.wait_for(asyncio.gather(sender(), chaos(), receiver(bob)), timeout=60)
            assert killed.is_set() and alice.reconnects >= 1 and bob.reconnects >= 1

        stored = await read_all(server.url, alice_token, "r")
        texts = [m for m in stored if m["kind"] == "text"]
        # Every acked message is stored exactly once, under the seq its ack named.
        by_cmid = {m["cmid"]: m for m in texts}
        assert len(by_cmid) == len(texts) == total
        for ack in acks:
            assert by_cmid[ack.cmid]["seq"] == ack.seq
        # The store's sequence is dense.
        assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
        # The receiver saw every message exactly once, in seq order.
        assert [m.seq for m in received] == [m["seq"] for m in texts]
    finally:
        server.stop()

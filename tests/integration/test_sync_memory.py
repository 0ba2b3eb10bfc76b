"""The sync attack of issue #17 (point 5) against a real ``roost serve``, measuring the server's memory.

One ``POST /api/sync`` over 40 rooms of 500 messages of 8 KiB was a 163 MB answer and grew the server
from 169 to 571 MB (4 at once: 1.9 GB). Here the same rooms are read by one client and then by four at
once, each following ``next`` to the end, while the server process's resident memory (``VmRSS``) is
sampled; the growth over the filled server's must stay far below one unbounded answer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from roost.config import Limits

from ..backends import REDIS, _clean_redis
from .procs import ServerProcess

ROOMS, PER_ROOM, BODY = 40, 500, "z" * 8192
GROWTH_BOUND = 120 * 2**20
"""Allowed growth of the server's resident memory over the whole test: one unbounded answer was 163 MB of
JSON (and 400 MB of memory); a bounded one is 2 MiB, and 4 at once, with their store reads, stay far below."""


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(params=["embedded", "redis"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    # Filling 40 rooms fast is set-up, not the attack: send, membership and frame budgets are lifted for it.
    lifted = ("sends_per_s", "send_burst", "membership_per_s", "membership_burst")
    lifted += ("frames_per_s", "frame_burst", "user_frames_per_s", "user_frame_burst")
    extra = [arg for name in lifted for arg in ("--limit", f"{name}=1000000")]
    prefix = "m" + uuid.uuid4().hex[:10]
    if request.param == "redis":
        extra += ["--store", f"{REDIS}?prefix={prefix}"]
    (tmp_path / "data").mkdir()
    node = ServerProcess(tmp_path / "data", None, *extra)
    await node.start()
    try:
        yield node
    finally:
        node.stop()
        if request.param == "redis":
            await _clean_redis(REDIS, prefix)


async def _fill(node: ServerProcess, http: aiohttp.ClientSession, token: str) -> None:
    """Every room through one WebSocket, 500 sends pipelined per room (group commit stores them together)."""
    async with http.ws_connect(node.ws_url) as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "welcome"
        for r in range(ROOMS):
            room = f"big{r}"
            await ws.send_str(json.dumps({"type": "create", "room": room, "id": f"c{r}"}))
            for i in range(PER_ROOM):
                await ws.send_str(json.dumps({"type": "send", "room": room, "cmid": f"{r}-{i}", "body": BODY}))
            acks = 0
            while acks < PER_ROOM:
                msg = await ws.receive(timeout=60)
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                for part in msg.data.split("\n"):
                    frame = json.loads(part)
                    assert frame["type"] in ("ok", "ack", "presence"), frame
                    acks += frame["type"] == "ack"


async def _catch_up(node: ServerProcess, http: aiohttp.ClientSession, token: str) -> tuple[int, int, int]:
    """Follow ``next`` from cursor 0 in every room; (answers, messages, the largest answer in bytes)."""
    cursors: dict[str, int] = {f"big{r}": 0 for r in range(ROOMS)}
    answers = messages = largest = 0
    headers = {"Authorization": f"Bearer {token}"}
    while cursors:
        async with http.post(node.url + "/api/sync", json={"rooms": cursors, "limit": 500}, headers=headers) as resp:
            assert resp.status == 200
            raw = await resp.read()
        out: dict[str, Any] = json.loads(raw)
        answers += 1
        largest = max(largest, len(raw))
        messages += sum(len(page["messages"]) for page in out["rooms"].values())
        cursors = out["next"]
    return answers, messages, largest


@pytest.mark.timeout(300)  # 160 MB stored, then read five times: about 30 s on a quiet machine, more on a busy one
async def test_syncs_over_40_rooms_of_500_messages_of_8_kib_keep_the_server_small(server: ServerProcess) -> None:
    """[R-HTTP-50] [R-LIMIT-50] The attack's 40 rooms of 500 messages of 8 KiB (160 MB): one client following
    ``next`` gets all 20,040 messages in answers of at most 2 MiB, then four clients do the same at once;
    the server's resident memory, sampled throughout, grows by less than 120 MB (it grew by 400 MB for one
    unbounded answer, 1.7 GB for four)."""
    assert server.proc is not None
    pid = server.proc.pid
    limits = Limits()
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/api/login", json={"name": "alice"}) as resp:
            token = (await resp.json())["token"]
        await _fill(server, http, token)
        before = peak = rss(pid)
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss(pid))
                await asyncio.sleep(0.02)  # a wait helper's poll: the sampling interval

        sampler = asyncio.create_task(sample())
        try:
            one = await _catch_up(server, http, token)
            after_one = rss(pid)
            four = await asyncio.gather(*(_catch_up(server, http, token) for _ in range(4)))
        finally:
            sampling = False
            await sampler
        after = rss(pid)
    report = (
        f"rss before {before / 2**20:.0f} MB, after one {after_one / 2**20:.0f} MB, after four "
        f"{after / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB; one client: {one[0]} answers, largest {one[2]} B"
    )
    print(report)  # shown with -s: the numbers of the report
    total = ROOMS * (PER_ROOM + 1)
    assert one[1] == total and all(result[1] == total for result in four)
    assert max(result[2] for result in (one, *four)) <= limits.max_sync_bytes + 64 * 1024
    assert peak - before < GROWTH_BOUND, report

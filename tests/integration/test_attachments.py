"""Attachments on every backend (local blobs), and on the S3 engine against a real S3 API server (moto_server,
started here on a free loopback port and stopped by pid): upload, send with attachments, download by members only,
signed links, hostile uploads (oversized, wrong types, path tricks and HTML in names), deletion and the sweep."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from roost.chaos.infra import free_port
from roost.client import RequestFailed, connect
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.protocol.rich import decode_rich
from roost.protocol.types import KIND_TEXT, Draft, Message

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw

MOTO = Path(sys.executable).with_name("moto_server")


def png(size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def http(
    node: Node, method: str, path: str, user: str | None = None, *, data: Any = None, **kw: Any
) -> tuple[int, dict[str, str], bytes]:
    headers = dict(kw.pop("headers", {}))
    if user is not None:
        headers["Authorization"] = f"Bearer {node.tokens.issue(user)}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, node.url + path, data=data, headers=headers, **kw) as r,
    ):
        return r.status, dict(r.headers), await r.read()


async def upload(
    node: Node, user: str, room: str, data: bytes, name: str, content_type: str = "application/octet-stream"
) -> tuple[int, dict[str, Any]]:
    status, _, body = await http(
        node,
        "POST",
        f"/api/rooms/{room}/attachments",
        user,
        data=io.BytesIO(data) if isinstance(data, bytes) else data,
        params={"name": name},
        headers={"Content-Type": content_type},
    )
    return status, json.loads(body)


def refused(answer: tuple[int, Any], code: Code) -> None:
    status, body = answer[0], answer[-1]
    body = json.loads(body) if isinstance(body, bytes) else body
    assert status == int(code) - 4000 and body["error"]["code"] == code, answer


async def stored_blobs(node: Node) -> list[str]:
    assert node.blobs is not None
    spool = list(node.blobs.spool.iterdir())
    assert spool == [], spool  # nothing half written left behind either
    return await node.blobs.ids()


async def scenario(node: Node) -> None:
    """The common story, run on every backend and on the S3 engine."""
    await make_room(node, "alice", "lobby", "bob")
    await make_room(node, "dave", "elsewhere")
    await node.service.create_room("alice", "hideout", "private")
    image = png()
    status, up = await upload(node, "alice", "lobby", image, "../../cat.png", content_type="text/html")
    assert status == 201, up
    assert up == {
        "id": up["id"],
        "name": "cat.png",
        "type": "image/png",
        "size": len(image),
        "width": 640,
        "height": 480,
    }
    blob = up["id"]
    # Not sent yet: only its uploader may fetch it.
    status, _, got = await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}", "alice")
    assert status == 200 and got == image
    refused(await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}", "bob"), Code.UNKNOWN_ROOM)
    # Bob cannot send alice's upload, nor can it go to another room.
    bob = await Raw.open(node, "bob")
    answer = await bob.request(
        {"type": "send", "room": "lobby", "cmid": "b1", "body": "mine", "attachments": [blob], "id": "1"}
    )
    assert answer["type"] == "error" and answer["code"] == Code.UNKNOWN_ROOM, answer
    alice = await Raw.open(node, "alice")
    send = {"type": "send", "room": "lobby", "cmid": "a1", "body": "", "attachments": [blob], "id": "2"}
    ack = await alice.request(send)
    assert ack["type"] == "ack" and ack["dup"] is False, ack
    status, _, raw = await http(node, "GET", f"/api/rooms/lobby/messages?after={ack['seq'] - 1}", "bob")
    live = json.loads(raw)["messages"][0]
    assert status == 200 and live["kind"] == "rich" and live["seq"] == ack["seq"]
    assert json.loads(live["body"]) == {"body": "", "attachments": [up]}
    # A retry is the same message, byte for byte; the same upload under another cmid is refused.
    again = await alice.request({**send, "id": "3"})
    assert again["dup"] is True and again["seq"] == ack["seq"]
    page = await node.backends.store.read("lobby", ack["seq"] - 1, 1)
    assert page.messages[0].body == live["body"]
    other = await alice.request({**send, "cmid": "a2", "id": "4"})
    assert other["type"] == "error" and other["code"] == Code.CONFLICT, other
    # Bob, a member, downloads it; the headers keep it from being a page of this origin.
    status, headers, got = await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}", "bob")
    assert status == 200 and got == image
    assert headers["Content-Type"] == "image/png" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert headers["Content-Disposition"] == "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
    assert headers["Cache-Control"] == "private, no-cache"
    status, headers, thumb = await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}?thumb=1", "bob")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb)) as shown:
        assert shown.size == (320, 240)
    # A signed link works without a header, for bob only, and membership is still checked when it is used.
    status, _, raw = await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}/link", "bob")
    link = json.loads(raw)
    assert status == 200 and link["thumb"] and link["expires"] > 0, link
    status, _, got = await http(node, "GET", link["url"])
    assert status == 200 and got == image
    status, _, got = await http(node, "GET", link["thumb"])
    assert status == 200 and got == thumb
    refused(await http(node, "GET", link["url"].replace("user=bob", "user=dave")), Code.UNAUTHORIZED)
    # Outsiders get a history read's refusals: 4403 in a public room, 4404 in a private one or for another room.
    refused(await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}", "dave"), Code.FORBIDDEN)
    refused(await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}/link", "dave"), Code.FORBIDDEN)
    refused(await http(node, "GET", f"/api/rooms/hideout/attachments/{blob}", "bob"), Code.UNKNOWN_ROOM)
    refused(await http(node, "GET", f"/api/rooms/elsewhere/attachments/{blob}", "dave"), Code.UNKNOWN_ROOM)
    refused(await http(node, "GET", f"/api/rooms/lobby/attachments/{'0' * 32}", "bob"), Code.UNKNOWN_ROOM)
    refused(await http(node, "GET", "/api/rooms/lobby/attachments/..%2F..%2Fsecret", "bob"), Code.UNKNOWN_ROOM)
    refused(await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}"), Code.UNAUTHORIZED)
    await node.service.leave("bob", "lobby")
    refused(await http(node, "GET", link["url"]), Code.FORBIDDEN)
    # Deleting the message removes its file at once; nothing serves it again.
    await node.service.delete("alice", "lobby", ack["seq"])
    refused(await http(node, "GET", f"/api/rooms/lobby/attachments/{blob}", "alice"), Code.UNKNOWN_ROOM)
    assert blob not in await stored_blobs(node)
    await alice.close()
    await bob.close()


async def test_a_file_is_uploaded_sent_and_downloaded_by_members_only(node: Node) -> None:
    """[R-ATT-1] [R-ATT-2] [R-ATT-3] [R-ATT-4] [R-ATT-6] [R-ATT-7] On every backend: an upload's type comes from
    its bytes (the client said text/html), an image gets its size and a thumbnail, a send names it and the stored
    rich message lists it as the server recorded it; a retry is byte-equal, a second message cannot take it; members
    download it (and by signed link) with nosniff, a sandboxing CSP and the sanitized name; outsiders get the
    refusals of a history read; a deletion removes the file."""
    await scenario(node)


async def test_hostile_uploads_are_refused_with_stable_codes_and_store_nothing(node: Node) -> None:
    """[R-ATT-1] [R-ATT-2] [R-ATT-5] Oversized (declared, or streamed without a length), empty, a type outside the
    allowed ones, a pixel bomb, a non-member, no credential: each a clear error with its code, and no blob nor
    spool file kept; path tricks and HTML in a name leave a harmless display name, and the node stays ready."""
    await make_room(node, "alice", "lobby")
    limit = node.settings.limits.max_attachment_bytes
    refused(await upload(node, "alice", "lobby", b"x" * (limit + 1), "big.bin"), Code.TOO_LARGE)

    async def trickle() -> AsyncIterator[bytes]:  # no Content-Length: refused as it passes the limit
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    refused(await upload(node, "alice", "lobby", trickle(), "big.bin"), Code.TOO_LARGE)  # type: ignore[arg-type]
    refused(await upload(node, "alice", "lobby", b"", "empty.txt"), Code.BAD_FRAME)
    refused(await upload(node, "bob", "lobby", b"hello", "a.txt"), Code.FORBIDDEN)
    refused(await upload(node, "alice", "nowhere", b"hello", "a.txt"), Code.UNKNOWN_ROOM)
    status, _, body = await http(node, "POST", "/api/rooms/lobby/attachments?name=a.txt", None, data=b"hello")
    refused((status, body), Code.UNAUTHORIZED)
    assert await stored_blobs(node) == []
    status, up = await upload(node, "alice", "lobby", b"<b>hi</b>", '<img src=x onerror="alert(1)">/../../x.html')
    assert status == 201 and up["name"] == "x.html" and up["type"] == "text/plain", up
    status, up = await upload(node, "alice", "lobby", b"<b>hi</b>", "<b>bold<i>.txt")
    assert status == 201 and up["name"] == "_b_bold_i_.txt", up
    status, headers, got = await http(node, "GET", f"/api/rooms/lobby/attachments/{up['id']}", "alice")
    assert status == 200 and got == b"<b>hi</b>" and headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Disposition"].startswith("attachment; ")
    status, _, readyz = await http(node, "GET", "/readyz")
    assert status == 200, readyz


async def test_types_and_pixels_are_limited(settings: Settings) -> None:
    """[R-ATT-2] With only images allowed, text and bytes are 4415; an image declaring more pixels than allowed is
    4413 before it is decoded; nothing is stored."""
    strict = replace(with_limits(settings, max_image_pixels=10_000), attachment_types=("image/png", "image/jpeg"))
    async with serve(strict) as node:
        await make_room(node, "alice", "lobby")
        refused(await upload(node, "alice", "lobby", b"just text", "a.png", "image/png"), Code.UNSUPPORTED_TYPE)
        refused(await upload(node, "alice", "lobby", b"MZ\x90\x00\xff", "a.exe"), Code.UNSUPPORTED_TYPE)
        refused(await upload(node, "alice", "lobby", png((1000, 1000)), "bomb.png"), Code.TOO_LARGE)
        assert await stored_blobs(node) == []
        status, up = await upload(node, "alice", "lobby", png((50, 50)), "ok.png")
        assert status == 201 and up["width"] == 50


async def test_sends_naming_attachments_are_checked(node: Node) -> None:
    """[R-ATT-3] Ids that are malformed, repeated, over ten, unknown, of another room or of another user are
    refused (4400, 4404) and nothing is stored; a send with text beside the files is answered again as a duplicate;
    a send refused for its cmid leaves its file free for the next."""
    await make_room(node, "alice", "lobby", "bob")
    await make_room(node, "alice", "other")
    _, mine = await upload(node, "alice", "lobby", b"notes", "notes.txt")
    _, elsewhere = await upload(node, "alice", "other", b"notes", "notes.txt")
    _, bobs = await upload(node, "bob", "lobby", b"notes", "notes.txt")
    head = (await node.backends.store.position("lobby")).head
    bad: list[tuple[list[str], Code]] = [
        (["../../etc"], Code.BAD_FRAME),
        ([mine["id"], mine["id"]], Code.BAD_FRAME),
        ([mine["id"]] * 11, Code.BAD_FRAME),
        (["0" * 32], Code.UNKNOWN_ROOM),
        ([elsewhere["id"]], Code.UNKNOWN_ROOM),
        ([bobs["id"]], Code.UNKNOWN_ROOM),
    ]
    for ids, code in bad:
        body = {"cmid": "c1", "body": "see", "attachments": ids}
        status, _, answer = await http(node, "POST", "/api/rooms/lobby/messages", "alice", json=body)
        refused((status, answer), code)
    assert (await node.backends.store.position("lobby")).head == head
    body = {"cmid": "c1", "body": "the notes", "attachments": [mine["id"]]}
    status, _, answer = await http(node, "POST", "/api/rooms/lobby/messages", "alice", json=body)
    assert status == 201, answer
    content = decode_rich(Message(**{k: v for k, v in json.loads(answer)["message"].items() if k != "type"}))
    assert content is not None and content.body == "the notes" and [a.id for a in content.attachments] == [mine["id"]]
    status, _, again = await http(node, "POST", "/api/rooms/lobby/messages", "alice", json=body)
    assert (
        status == 200
        and json.loads(again)["duplicate"] is True
        and json.loads(again)["message"] == json.loads(answer)["message"]
    )
    # A send refused (its cmid taken by another message: 4409) stores nothing and leaves its file free.
    _, spare = await upload(node, "alice", "lobby", b"spare", "spare.txt")
    taken = {"cmid": "c1", "body": "other", "attachments": [spare["id"]]}
    refused(await http(node, "POST", "/api/rooms/lobby/messages", "alice", json=taken), Code.CONFLICT)
    fresh = {"cmid": "c2", "body": "other", "attachments": [spare["id"]]}
    status, _, answer = await http(node, "POST", "/api/rooms/lobby/messages", "alice", json=fresh)
    assert status == 201, answer


async def test_deletion_erasure_and_the_sweep_remove_blobs(settings: Settings) -> None:
    """[R-ATT-7] [R-ATT-8] An erasure removes the message's files at once; a delete whose removal was cut short (a
    crash after the delete was stored), an upload never sent past attachment_orphan_s, a claim whose message was
    never stored, and the file of a message retention dropped are removed by the sweep; a claim whose message was
    stored but not sealed (a crash between) is sealed, not removed."""
    quick = with_limits(settings, attachment_orphan_s=0.0, attachment_sweep_s=3600.0)
    async with serve(quick) as node:
        assert node.sweeper is not None
        service = node.service
        await make_room(node, "alice", "lobby", "bob")
        ids = []
        for i in range(5):
            ids.append((await upload(node, "alice", "lobby", f"file {i}".encode(), f"f{i}.txt"))[1]["id"])
        erased = await service.send("alice", "lobby", "m0", "a", attachments=[ids[0]])
        await service.delete("alice", "lobby", erased.message.seq, erase=True)
        assert ids[0] not in await stored_blobs(node)
        cut = await service.send("alice", "lobby", "m1", "b", attachments=[ids[1]])
        service.relation_rules.on_delete = None  # the node dies between the stored delete and the removal
        await service.delete("alice", "lobby", cut.message.seq)
        service.relation_rules.on_delete = service.attachments.message_deleted
        refused(await http(node, "GET", f"/api/rooms/lobby/attachments/{ids[1]}", "bob"), Code.UNKNOWN_ROOM)
        await service.attachments.claim("alice", "alice", "lobby", "never-stored", [ids[2]])
        files, _ = await service.attachments.claim("alice", "alice", "lobby", "m3", [ids[3]])
        draft = Draft("lobby", "alice", "m3", "c", KIND_TEXT)
        unsealed = await service._store_text("alice", draft, None, None, files)  # the node dies before the seal
        kept = await service.send("alice", "lobby", "m4", "d", attachments=[ids[4]])
        done = await node.sweeper.run_once()
        assert done is not None and done.sealed == 1, done
        left = await stored_blobs(node)
        assert left == sorted([ids[3], ids[4]]), (left, ids)
        status, _, got = await http(node, "GET", f"/api/rooms/lobby/attachments/{ids[3]}", "bob")
        assert status == 200 and got == b"file 3"
        await node.backends.store.trim("lobby", 1)  # retention drops every message but the newest (m4)
        assert kept.message.seq == (await node.backends.store.position("lobby")).head
        await node.sweeper.run_once()
        assert await stored_blobs(node) == [ids[4]]
        assert unsealed.message.seq < kept.message.seq


# ---- S3 -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API server (moto in server mode) on a free loopback port, for this module; stopped by pid."""
    port = free_port()
    proc = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_for(url))
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


async def _wait_for(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url + "/moto-api/") as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # a wait helper's poll
    raise AssertionError("moto_server did not start")


def on_s3(settings: Settings, endpoint: str, bucket: str) -> Settings:
    return replace(
        settings,
        blobs=f"s3://{bucket}/roost",
        s3_endpoint=endpoint,
        s3_access_key="test",
        s3_secret_key="test",
    )


async def test_the_s3_engine_keeps_files_in_a_bucket(embedded_settings: Settings, s3_endpoint: str) -> None:
    """[R-ATT-9] The same story with the blobs in an S3 bucket (moto_server), then the sweep there."""
    async with serve(on_s3(embedded_settings, s3_endpoint, "story")) as node:
        assert node.blobs is not None and node.blobs.shared
        await scenario(node)
        refused(
            await upload(node, "alice", "lobby", b"x" * (node.settings.limits.max_attachment_bytes + 1), "b"),
            Code.TOO_LARGE,
        )
        status, up = await upload(node, "alice", "lobby", b"left alone", "orphan.txt")
        assert status == 201 and await stored_blobs(node) == [up["id"]]
    async with serve(with_limits(on_s3(embedded_settings, s3_endpoint, "story"), attachment_orphan_s=0.0)) as node:
        assert node.sweeper is not None
        await node.sweeper.run_once()
        assert await stored_blobs(node) == []


async def test_nodes_sharing_a_bucket_serve_each_others_files(shared: Settings, s3_endpoint: str) -> None:
    """[R-ATT-9] Two nodes over one shared engine and one bucket: a file uploaded to one is downloaded from the
    other (with the shared secret, by signed link too); with local blobs instead, /readyz warns."""
    bucket = f"nodes-{os.getpid()}"
    async with serve(on_s3(shared, s3_endpoint, bucket)) as a, serve(on_s3(shared, s3_endpoint, bucket)) as b:
        await make_room(a, "alice", "lobby", "bob")
        _, up = await upload(a, "alice", "lobby", png((64, 64)), "dot.png")
        await a.service.send("alice", "lobby", "m1", "", attachments=[up["id"]])
        status, _, got = await http(b, "GET", f"/api/rooms/lobby/attachments/{up['id']}", "bob")
        assert status == 200 and got == png((64, 64))
        _, _, raw = await http(a, "GET", f"/api/rooms/lobby/attachments/{up['id']}/link", "bob")
        status, _, got = await http(b, "GET", json.loads(raw)["url"])
        assert status == 200 and got == png((64, 64))
        _, _, ready = await http(a, "GET", "/readyz")
        assert not any("attachments" in w for w in json.loads(ready)["warnings"])
    async with serve(shared) as local:
        _, _, ready = await http(local, "GET", "/readyz")
        assert any("--blobs s3://" in w for w in json.loads(ready)["warnings"])


async def test_the_sdk_uploads_and_sends_files(node: Node) -> None:
    """[R-ATT-1] [R-ATT-3] ``Client.upload`` posts the bytes to the node of its URL and returns the record;
    ``send(..., attachments=)`` goes through the outbox like any send; a refused upload raises the code."""
    await make_room(node, "alice", "lobby")
    async with connect([node.ws_url], node.tokens.issue("alice")) as client:
        up = await client.upload("lobby", b"minutes of the meeting", "minutes.txt")
        assert (up.name, up.type, up.size) == ("minutes.txt", "text/plain", 22)
        sent = await client.send("lobby", "", attachments=[up.id])
        page = await node.backends.store.read("lobby", sent.seq - 1, 1)
        content = decode_rich(page.messages[0])
        assert content is not None and content.attachments == (up,)
        with pytest.raises(RequestFailed) as refused_upload:
            await client.upload("lobby", b"x" * (node.settings.limits.max_attachment_bytes + 1), "big.bin")
        assert refused_upload.value.code == Code.TOO_LARGE
        with pytest.raises(RequestFailed) as refused_room:
            await client.upload("nowhere", b"x", "a.txt")
        assert refused_room.value.code == Code.UNKNOWN_ROOM

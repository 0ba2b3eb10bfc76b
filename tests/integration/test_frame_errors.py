"""The "Errors:" list of each client frame in docs/protocol.md section 5, case by case, against a real server.

One room state serves every case: ``pub`` (owner alice, admin carol, member bob, dave banned), ``priv`` (private,
alice's), ``dm:alice:bob``; ``full`` is in as many rooms as the limit allows (4 here); ``zed`` is in none.
4429 is checked by tests/integration/test_rate.py and test_relations.py (edits, deletes and reactions share the
send rate), 4503 by test_send.py and test_failover.py, the 4410 of ``subscribe`` by test_cursors.py and
test_catchup.py; 4500 is a server bug and has no case.
"""

from __future__ import annotations

from typing import Any

from roost.config import Settings
from roost.node import serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from .wsutil import Raw

OK = 0
"""Not an error: the frame's reply (``ok``, ``ack``, ``history``; nothing for ``typing``)."""

BAD, FORBIDDEN, UNKNOWN, CONFLICT = Code.BAD_FRAME, Code.FORBIDDEN, Code.UNKNOWN_ROOM, Code.CONFLICT
TOO_LARGE, TOO_MANY = Code.TOO_LARGE, Code.TOO_MANY_ROOMS
DM = "dm:alice:bob"


def _cases(text: int, deleted: int, alices: int) -> list[tuple[str, str, dict[str, Any], int]]:
    """(frame type, user, frame fields, the code the doc lists for it, or OK)."""
    big = "x" * 16385
    return [
        ("create", "alice", {"room": "bad name!"}, BAD),
        ("create", "alice", {"room": "dm:x:y"}, BAD),
        ("create", "alice", {"room": "new", "kind": "secret"}, BAD),
        ("create", "alice", {"room": "pub"}, CONFLICT),
        ("create", "full", {"room": "f5"}, TOO_MANY),
        ("dm", "alice", {"user": "bad name!"}, BAD),
        ("dm", "alice", {"user": "alice"}, BAD),
        ("dm", "full", {"user": "zed"}, TOO_MANY),
        ("dm", "zed", {"user": "full"}, OK),  # the limit is not checked for the other user
        ("invite", "bob", {"room": "pub", "user": "zed"}, FORBIDDEN),
        ("invite", "alice", {"room": "pub", "user": "dave"}, FORBIDDEN),
        ("invite", "alice", {"room": DM, "user": "zed"}, FORBIDDEN),
        ("invite", "alice", {"room": "pub", "user": "bob"}, CONFLICT),
        ("invite", "alice", {"room": "nope", "user": "zed"}, UNKNOWN),
        ("invite", "alice", {"room": "pub", "user": "bad name!"}, BAD),
        ("kick", "bob", {"room": "pub", "user": "carol"}, FORBIDDEN),
        ("kick", "carol", {"room": "pub", "user": "alice"}, FORBIDDEN),
        ("kick", "alice", {"room": DM, "user": "bob"}, FORBIDDEN),
        ("kick", "alice", {"room": "nope", "user": "bob"}, UNKNOWN),
        ("kick", "alice", {"room": "pub", "user": "zed"}, UNKNOWN),
        ("kick", "alice", {"room": "pub", "user": "alice"}, BAD),
        ("ban", "bob", {"room": "pub", "user": "zed"}, FORBIDDEN),
        ("ban", "carol", {"room": "pub", "user": "alice"}, FORBIDDEN),
        ("ban", "alice", {"room": DM, "user": "bob"}, FORBIDDEN),
        ("ban", "alice", {"room": "nope", "user": "zed"}, UNKNOWN),
        ("ban", "alice", {"room": "pub", "user": "alice"}, BAD),
        ("ban", "alice", {"room": "pub", "user": "yves"}, OK),  # a non-member, banned ahead of time
        ("unban", "bob", {"room": "pub", "user": "dave"}, FORBIDDEN),
        ("unban", "alice", {"room": "nope", "user": "dave"}, UNKNOWN),
        ("unban", "alice", {"room": "pub", "user": "alice"}, BAD),
        ("role", "carol", {"room": "pub", "user": "bob", "role": "admin"}, FORBIDDEN),
        ("role", "alice", {"room": DM, "user": "bob", "role": "admin"}, FORBIDDEN),
        ("role", "alice", {"room": "pub", "user": "zed", "role": "admin"}, UNKNOWN),
        ("role", "alice", {"room": "pub", "user": "bob", "role": "king"}, BAD),
        ("role", "alice", {"room": "pub", "user": "alice", "role": "admin"}, BAD),
        ("join", "zed", {"room": "priv"}, UNKNOWN),  # R-SEC-63: as if there were none
        ("join", "dave", {"room": "pub"}, FORBIDDEN),
        ("join", "zed", {"room": DM}, UNKNOWN),
        ("join", "zed", {"room": "nope"}, UNKNOWN),
        ("join", "zed", {"room": "bad name!"}, BAD),
        ("join", "full", {"room": "pub"}, TOO_MANY),
        ("leave", "zed", {"room": "nope"}, UNKNOWN),
        ("leave", "zed", {"room": "bad name!"}, BAD),
        ("leave", "zed", {"room": "pub"}, OK),  # also when not a member
        ("subscribe", "zed", {"room": "pub"}, FORBIDDEN),
        ("subscribe", "zed", {"room": "nope"}, UNKNOWN),
        ("subscribe", "bob", {"room": "pub", "after": -1}, BAD),
        ("unsubscribe", "zed", {"room": "pub"}, OK),  # no membership check
        ("send", "bob", {"room": "pub", "cmid": "has space", "body": "x"}, BAD),
        ("send", "bob", {"room": "pub", "cmid": "s1", "body": " \n "}, BAD),
        ("send", "bob", {"room": "bad name!", "cmid": "s1", "body": "x"}, BAD),
        ("send", "bob", {"room": "pub", "cmid": "s1", "body": big}, TOO_LARGE),
        ("send", "zed", {"room": "pub", "cmid": "s1", "body": "x"}, FORBIDDEN),
        ("send", "alice", {"room": "nope", "cmid": "s1", "body": "x"}, UNKNOWN),
        ("send", "alice", {"room": "pub", "cmid": "a1", "body": "another body"}, CONFLICT),
        ("edit", "zed", {"room": "pub", "target": text, "body": "x", "cmid": "e1"}, FORBIDDEN),
        ("edit", "carol", {"room": "pub", "target": text, "body": "x", "cmid": "e1"}, FORBIDDEN),
        ("edit", "bob", {"room": "pub", "target": 999, "body": "x", "cmid": "e1"}, UNKNOWN),
        ("edit", "bob", {"room": "pub", "target": deleted, "body": "x", "cmid": "e1"}, CONFLICT),
        ("edit", "bob", {"room": "pub", "target": text, "body": "x", "cmid": "b1"}, CONFLICT),  # the send's cmid
        ("edit", "bob", {"room": "pub", "target": 1, "body": "x", "cmid": "e1"}, BAD),
        ("edit", "bob", {"room": "pub", "target": text, "body": "x", "cmid": "has space"}, BAD),
        ("edit", "bob", {"room": "pub", "target": text, "body": "", "cmid": "e1"}, BAD),
        ("edit", "bob", {"room": "pub", "target": text, "body": big, "cmid": "e1"}, TOO_LARGE),
        ("delete", "zed", {"room": "pub", "target": text}, FORBIDDEN),
        ("delete", "bob", {"room": "pub", "target": alices}, FORBIDDEN),
        ("delete", "bob", {"room": "pub", "target": 999}, UNKNOWN),
        ("delete", "alice", {"room": "pub", "target": deleted}, CONFLICT),  # deleted by someone else
        ("delete", "bob", {"room": "pub", "target": deleted, "cmid": "other"}, CONFLICT),  # with another cmid
        ("delete", "bob", {"room": "pub", "target": 1}, BAD),
        ("react", "zed", {"room": "pub", "target": text, "emoji": "+1"}, FORBIDDEN),
        ("react", "bob", {"room": "pub", "target": 999, "emoji": "+1"}, UNKNOWN),
        ("react", "bob", {"room": "pub", "target": text, "emoji": "+1", "remove": True}, UNKNOWN),
        ("react", "bob", {"room": "pub", "target": deleted, "emoji": "+1"}, CONFLICT),
        ("react", "bob", {"room": "pub", "target": 1, "emoji": "+1"}, BAD),
        ("react", "bob", {"room": "pub", "target": text, "emoji": ""}, BAD),
        ("history", "zed", {"room": "pub"}, FORBIDDEN),
        ("history", "alice", {"room": "nope"}, UNKNOWN),
        ("history", "alice", {"room": "pub", "after": 0, "before": 5}, BAD),
        ("history", "alice", {"room": "pub", "before": -1}, BAD),
        ("typing", "zed", {"room": "pub"}, FORBIDDEN),
        ("typing", "alice", {"room": "nope"}, UNKNOWN),
        ("read", "zed", {"room": "pub", "seq": 1}, FORBIDDEN),
        ("read", "alice", {"room": "nope", "seq": 1}, UNKNOWN),
        ("read", "alice", {"room": "pub", "seq": -1}, BAD),
    ]


async def test_every_error_a_client_frame_lists_is_the_servers_answer(settings: Settings) -> None:
    """[R-CODE-3] [R-CODE-4] [R-CODE-5] [R-CODE-6] [R-CODE-7] [R-CODE-8] [R-CODE-9] [R-CODE-10] [R-CODE-11]
    [R-CODE-12] [R-CODE-13] [R-CODE-14] [R-CODE-15] [R-CODE-16] [R-CODE-17] [R-CODE-18] [R-CODE-19] The errors
    section 5 lists for ``create``, ``dm``, ``invite``, ``kick``, ``ban``, ``unban``, ``role``, ``join``,
    ``leave``, ``subscribe``, ``send``, ``edit``, ``delete``, ``react``, ``history``, ``typing`` and ``read``,
    each in the situation the list gives, with the frame's ``id`` as ``ref``; and the successes the lists single
    out (``leave``/``unsubscribe`` of a room one does not follow, a ban ahead of time, a dm with a full user)."""
    async with serve(with_limits(settings, max_rooms_per_user=4)) as node:
        service = node.service
        await service.create_room("alice", "pub")
        for user in ("bob", "carol", "dave"):
            await service.join(user, "pub")
        await service.set_role("alice", "pub", "carol", "admin")
        await service.ban("alice", "pub", "dave")
        await service.create_room("alice", "priv", "private")
        assert await service.dm("alice", "bob") == DM
        for room in ("f1", "f2", "f3", "f4"):
            await service.create_room("full", room)
        for other in ("o1", "o2", "o3", "o4"):  # rooms and opened conversations are separate budgets
            await service.dm("full", other)
        text = (await service.send("bob", "pub", "b1", "hello")).message.seq
        deleted = (await service.send("bob", "pub", "b2", "gone")).message.seq
        await service.delete("bob", "pub", deleted)
        alices = (await service.send("alice", "pub", "a1", "alice's")).message.seq
        wrong: list[object] = []
        sockets: dict[str, Raw] = {}
        for n, (kind, user, fields, code) in enumerate(_cases(text, deleted, alices)):
            if user not in sockets:
                sockets[user] = await Raw.open(node, user)
            raw = sockets[user]
            frame = {"type": kind, **fields, "id": f"f{n}"}
            reply = await raw.request(frame)
            got = reply["code"] if reply["type"] == "error" else OK
            if got != code:
                wrong.append((frame if len(str(frame)) < 300 else kind, code, reply))
        for raw in sockets.values():
            await raw.close()
        assert not wrong, wrong

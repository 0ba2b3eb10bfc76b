"""Direct conversations opened by others do not use up a user's rooms limit."""

from __future__ import annotations

from roost.config import Settings
from roost.node import serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from ..integration.wsutil import Raw


async def test_conversations_others_open_leave_the_users_budget_alone(settings: Settings) -> None:
    """[R-SEC-65] With a limit of 3: six accounts each open a direct conversation with vic; vic can still create and
    join rooms and open their own conversations, up to 3 of each (the 4th is 4422 and stores nothing). An opener's
    own conversations are limited to 3, whatever rooms they are in."""
    async with serve(with_limits(settings, max_rooms_per_user=3)) as node:
        for n in range(6):
            assert await node.service.dm(f"spam{n}", "vic") == f"dm:spam{n}:vic"
        assert len(await node.service.rooms_of("vic")) == 6
        vic = await Raw.open(node, "vic")
        await node.service.create_room("alice", "lobby")
        for frame in (
            {"type": "create", "room": "mine1"},
            {"type": "create", "room": "mine2"},
            {"type": "join", "room": "lobby"},
            {"type": "dm", "user": "friend1"},
            {"type": "dm", "user": "friend2"},
            {"type": "dm", "user": "friend3"},
            {"type": "dm", "user": "spam0"},  # in it already: nothing to count
        ):
            reply = await vic.request({**frame, "id": str(frame)})
            assert reply["type"] == "ok", (frame, reply)
        for frame in ({"type": "create", "room": "mine3"}, {"type": "dm", "user": "friend4"}):
            reply = await vic.request({**frame, "id": str(frame)})
            assert reply["type"] == "error" and reply["code"] == Code.TOO_MANY_ROOMS, (frame, reply)
        directory = node.backends.directory
        assert not await directory.room_exists("mine3")
        assert not await directory.room_exists("dm:friend4:vic")
        # The opener pays: spam0 has opened one, may open two more, not a third.
        await node.service.dm("spam0", "x1")
        await node.service.dm("spam0", "x2")
        spam = await Raw.open(node, "spam0")
        reply = await spam.request({"type": "dm", "user": "x3", "id": "d"})
        assert reply["type"] == "error" and reply["code"] == Code.TOO_MANY_ROOMS, reply
        reply = await spam.request({"type": "create", "room": "spams-room", "id": "c"})
        assert reply["type"] == "ok", reply  # rooms are a budget of their own
        await vic.close()
        await spam.close()

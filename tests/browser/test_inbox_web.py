"""The page and the user's event stream, in a real browser against a real ``roost serve``: what someone else
does to a user (a direct conversation opened with them, an invitation) shows on their page at once, without
a reload and without the page asking the server for its room list again and again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from ..integration.procs import ServerProcess
from .test_web import DESKTOP, Watch, open_page, send, sign_in, token_of, wait_shown

SHOWN_WITHIN_MS = 1000


async def _as(server: ServerProcess, token: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.request(method, server.url + path, json=body) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def test_a_new_conversation_and_an_invitation_show_at_once_without_polling(
    server: ServerProcess, browser: Any
) -> None:
    """[R-CLIENT-73] Bob opens a direct conversation with alice and invites her to a private room: alice's page
    shows the conversation (with bob's first message) and the invitation within a second, without a reload;
    Join takes her in, Decline ends another invitation; and over 40 s of the page's time it asks for
    ``/api/rooms`` not once (the 15 s poll is gone: the stream says what changes)."""
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, DESKTOP)
    await alice.clock.install()  # the page's timers run on a clock the test moves (below): no 40 s wait
    await sign_in(alice, server.url, "alice")
    await sign_in(bob, server.url, "bob")
    bob_token = await token_of(bob)

    started = time.monotonic()
    room = (await _as(server, bob_token, "POST", "/api/dm", {"user": "alice"}))["room"]
    await _as(server, bob_token, "POST", f"/api/rooms/{room}/messages", {"cmid": "b1", "body": "psst, alice"})
    await alice.wait_for_selector(f"#dmRooms [data-room='{room}']", timeout=SHOWN_WITHIN_MS)
    assert time.monotonic() - started < SHOWN_WITHIN_MS / 1000
    await alice.wait_for_selector("#roomTitle:text('@bob')")  # nothing was open: it opens, with bob's message
    await wait_shown(alice, ["psst, alice"])

    await _as(server, bob_token, "POST", "/api/rooms", {"room": "secret", "kind": "private"})
    await _as(server, bob_token, "POST", "/api/rooms", {"room": "other", "kind": "private"})
    started = time.monotonic()
    await _as(server, bob_token, "POST", "/api/rooms/secret/invite", {"user": "alice"})
    invite = alice.locator("#invites [data-invite=secret]")
    await invite.wait_for(timeout=SHOWN_WITHIN_MS)
    assert time.monotonic() - started < SHOWN_WITHIN_MS / 1000
    assert "from bob" in (await invite.text_content() or "")
    await _as(server, bob_token, "POST", "/api/rooms/other/invite", {"user": "alice"})
    await alice.locator("#invites [data-invite=other]").wait_for(timeout=SHOWN_WITHIN_MS)

    # Join takes her in (the room opens and the invitation goes); Decline ends the other one on the server.
    await invite.locator("button.accept").click()
    await alice.wait_for_selector("#roomTitle:text('#secret')")
    await alice.wait_for_selector("#myRooms [data-room=secret]")
    await alice.locator("#invites [data-invite=other] button.decline").click()
    await alice.wait_for_function("() => document.querySelectorAll('#invites li').length === 0")
    assert await alice.is_hidden("#invitesTitle")
    assert (await _as(server, await token_of(alice), "GET", "/api/invites")) == {"invites": []}
    await send(alice, "thanks, I'm in")
    await bob.click("#refreshRooms")
    await bob.click("[data-room=secret]")
    await wait_shown(bob, ["thanks, I'm in"])

    # A revoked invitation disappears from the page by itself.
    await _as(server, bob_token, "POST", "/api/rooms", {"room": "third", "kind": "private"})
    await _as(server, bob_token, "POST", "/api/rooms/third/invite", {"user": "alice"})
    await alice.locator("#invites [data-invite=third]").wait_for(timeout=SHOWN_WITHIN_MS)
    await _as(server, bob_token, "DELETE", "/api/rooms/third/invites/alice")
    await alice.wait_for_function("() => !document.querySelector('#invites [data-invite=third]')", timeout=2000)

    # No polling: 40 s of the page's timers, stepped so that its heartbeat still gets its pong in real time.
    asked: list[str] = []
    alice.on("request", lambda request: asked.append(request.url) if "/api/rooms" in request.url else None)
    for _ in range(16):
        await alice.clock.run_for(2500)
        await asyncio.sleep(0.05)  # the subject: real time for the heartbeat between steps of the fake clock
    assert await alice.is_visible("#conn[data-state=connected]")
    assert asked == []
    assert watch.dialogs == [] and watch.errors == []

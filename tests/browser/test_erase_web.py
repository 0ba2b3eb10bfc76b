"""Erasure and retention in the chat page: chromium against a real ``roost serve``.

* the sender erases a message (Erase, then a confirmation): another member's page shows it deleted and holds its
  text nowhere, neither in the DOM (the line, a reply's quote, a search result) nor in localStorage; the store
  serves the tombstone and the delete says ``erase``;
* the room's owner may delete and erase others' messages, a member only their own;
* the owner sets the room's retention in the room settings and every member's page shows it (the event in the
  room, the settings of a member whose panel is open); a member gets no form, and the server refuses them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..integration.procs import ServerProcess
from .test_inbox_web import _as
from .test_web import DESKTOP, PHONE, XSS, Page, Watch, created, joined, open_page, send, token_of, wait_shown

SECRET = "zanzibar"


@pytest.fixture
async def searching_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """``roost serve`` whose indexer looks for new rooms every 0.2 s (the default is 5 s)."""
    proc = ServerProcess(tmp_path / "data", None, "--limit", "search_rescan_s=0.2")
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def line(page: Page, body: str) -> Any:
    return page.locator("#messages li.msg", has=page.locator(".body", has_text=body))


async def search_until(page: Page, query: str, count: int) -> None:
    """Search until the index (which follows the store by a little) gives ``count`` results."""
    for _ in range(100):
        await page.fill("#searchInput", query)
        await page.press("#searchInput", "Enter")
        await page.wait_for_function("() => !document.getElementById('searchSummary').textContent.startsWith('Search')")
        if await page.locator("#searchList .search-hit").count() == count:
            return
        await page.wait_for_timeout(200)  # a wait helper's poll
    raise AssertionError(f"{query!r}: not {count} results")


async def test_an_erased_message_leaves_every_page_and_only_who_may_delete_gets_erase(
    searching_server: ServerProcess, browser: Any
) -> None:
    """[R-ERASE-1] [R-REL-3] [R-REL-6] Alice erases her message: bob's page shows "message deleted" and his DOM and
    localStorage hold its text nowhere (the line, the quote of his reply, his search result); the store serves a
    tombstone and the delete says ``erase``. A member gets Delete and Erase on their own messages only; the owner
    on others' too, and erases bob's."""
    server = searching_server
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, PHONE)
    await created(alice, server.url, "alice", "lobby")
    await joined(bob, server.url, "bob", "lobby")

    secret = f"the {SECRET} plan {XSS}"
    await send(alice, secret)
    await wait_shown(bob, [secret])
    await line(bob, SECRET).locator("button.reply").click()
    await send(bob, "noted, and mine")
    await wait_shown(bob, ["noted, and mine"])
    await wait_shown(alice, ["noted, and mine"])
    assert await line(bob, "noted").locator(".quote-text").text_content() == secret
    # Bob gets Delete and Erase on his own message only; alice, the owner, on his too.
    assert await line(bob, SECRET).locator("button.delete, button.erase").count() == 0
    assert await line(bob, "noted").locator("button.erase").count() == 1
    await alice.locator("#messages li.msg[data-sender=bob] button.erase").wait_for()
    await search_until(bob, SECRET, 1)  # the results stay open: they must lose it too
    seq = int(await line(alice, SECRET).get_attribute("data-seq") or 0)
    bob_saved = f"roost-page:{server.url.removeprefix('http://')}:bob:view:lobby"
    await bob.wait_for_function(f"() => (localStorage.getItem({json.dumps(bob_saved)}) || '').includes('{SECRET}')")

    # Alice erases it: a confirmation first; Cancel keeps it.
    mine = line(alice, SECRET)
    await mine.locator("button.erase").click()
    assert "store" in (await mine.locator(".confirm-erase").text_content() or "")
    await mine.locator(".confirm-erase button.cancel").click()
    assert await mine.locator(".confirm-erase").count() == 0
    await mine.locator("button.erase").click()
    await mine.locator(".confirm-erase button.really").click()

    erased = bob.locator(f"#messages li.msg[data-seq='{seq}']")
    await erased.locator(".body", has_text="message deleted").wait_for()
    assert await erased.get_attribute("data-deleted") == "true"
    # The text is nowhere in his DOM (his query, the one word "zanzibar", stays in the search box and its summary).
    await bob.wait_for_function(f"() => !document.documentElement.outerHTML.includes('{SECRET} plan')")
    assert await bob.text_content("#searchSummary") == f"No results for “{SECRET}”"
    assert await line(bob, "noted").locator(".quote-text").text_content() == "message deleted"  # its quote too
    assert await bob.locator("#searchList .search-hit").count() == 0
    await bob.wait_for_function(
        "secret => Object.keys(localStorage).every(k => !localStorage.getItem(k).includes(secret))", arg=SECRET
    )  # the saved copy of the room is written again a second after a change
    await alice.wait_for_function(f"() => !document.documentElement.outerHTML.includes('{SECRET} plan')")
    page = await _as(server, await token_of(bob), "GET", f"/api/rooms/lobby/messages?after={seq - 1}")
    stored = {m["seq"]: m for m in page["messages"]}
    assert (stored[seq]["kind"], stored[seq]["body"]) == ("deleted", "")
    delete = next(m for m in page["messages"] if m["kind"] == "delete")
    assert json.loads(delete["body"]) == {"target": seq, "erase": True}

    # The owner erases bob's message (a moderator of a higher role, R-SEC-64); bob sees it go.
    theirs = alice.locator("#messages li.msg[data-sender=bob]")
    await theirs.locator("button.erase").click()
    await theirs.locator(".confirm-erase button.really").click()
    await bob.locator("#messages li.msg[data-sender=bob].deleted").wait_for()
    assert "noted, and mine" not in (await bob.content())
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)


async def test_the_owner_sets_the_rooms_retention_and_a_member_sees_it_without_the_control(
    server: ServerProcess, browser: Any
) -> None:
    """[R-RET-1] The owner's room settings show the retention that applies and set the room's own (by count and by
    age); the change is an event every member's page shows, also in a member's open settings; a member gets the
    policy without the form, and a PUT of theirs is refused with 4403."""
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, DESKTOP)
    await created(alice, server.url, "alice", "lobby")
    await joined(bob, server.url, "bob", "lobby")

    await alice.click("#roomSettingsButton")
    now = alice.locator("#retentionNow")
    await alice.wait_for_function("() => document.getElementById('retentionNow').textContent.startsWith('Kept')")
    assert await now.text_content() == (
        "Kept: any number of messages (the server's default); of any age (the server's default)."
    )
    await alice.locator("#retentionForm").wait_for()
    await bob.click("#roomSettingsButton")
    await bob.wait_for_function("() => document.getElementById('retentionNow').textContent.startsWith('Kept')")
    assert await bob.locator("#retentionForm").is_hidden()

    await alice.fill("#retentionCount", "100")
    await alice.fill("#retentionDays", "30")
    await alice.click("#retentionForm button[type=submit]")
    expected = "Kept: the newest 100 messages (this room's setting); up to 30 days old (this room's setting)."
    await alice.wait_for_function("t => document.getElementById('retentionNow').textContent === t", arg=expected)
    await bob.wait_for_function("t => document.getElementById('retentionNow').textContent === t", arg=expected)
    event = "alice changed what the room keeps: messages the newest 100; age 30 days"
    for page in (alice, bob):
        shown = page.locator("#messages li.event[data-kind=retention]")
        await shown.wait_for()
        assert " ".join((await shown.text_content() or "").split()) == event
    assert await bob.locator("#retentionForm").is_hidden()
    policy = await _as(server, await token_of(bob), "GET", "/api/rooms/lobby/retention")
    assert (policy["room_max_messages"], policy["room_max_age_s"]) == (100, 30 * 86400)

    # Back to the server's default for the count; the age stays.
    await alice.fill("#retentionCount", "")
    await alice.click("#retentionForm button[type=submit]")
    expected = "Kept: any number of messages (the server's default); up to 30 days old (this room's setting)."
    await bob.wait_for_function("t => document.getElementById('retentionNow').textContent === t", arg=expected)

    # Bob, forcing it, is refused by the server.
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {await token_of(bob)}"}) as http,
        http.put(f"{server.url}/api/rooms/lobby/retention", json={"max_messages": 1}) as resp,
    ):
        assert resp.status == 403 and (await resp.json())["error"]["code"] == 4403
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)

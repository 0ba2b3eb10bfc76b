"""The page's search box in a real browser against a real ``roost serve``: results of the user's rooms only, their
snippets shown as text (markup in a message stays text), and a result opening its room at the message, read
around it, then caught up to the newest messages and live again.

``ROOST_UPDATE_SCREENSHOTS=1`` also writes docs/screenshot-search.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..integration.procs import ServerProcess
from .test_web import DESKTOP, PHONE, XSS, Watch, open_page, screenshot, send, sign_in, token_of


@pytest.fixture
async def searching_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """``roost serve`` whose indexer looks for new rooms every 0.2 s (the default is 5 s)."""
    proc = ServerProcess(tmp_path / "data", None, "--limit", "search_rescan_s=0.2")
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def post(server: ServerProcess, token: str, path: str, body: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.post(server.url + path, json=body) as resp,
    ):
        assert resp.status in (200, 201), await resp.text()


async def test_search_finds_my_rooms_shows_text_and_opens_the_room_at_the_message(
    searching_server: ServerProcess, browser: Any, tmp_path: Path
) -> None:
    server = searching_server
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, PHONE)
    await sign_in(alice, server.url, "alice")
    await alice.fill("#createForm input", "lobby")
    await alice.click("#createForm button")
    await alice.wait_for_selector("#messages li.event[data-kind=join]")
    # 80 messages before bob comes: the older needle is far above the newest page his page opens the room with.
    token = await token_of(alice)
    for i in range(80):
        body = f"the needle {XSS} is here" if i == 5 else "the last needle" if i == 70 else f"hay {i}"
        await post(server, token, "/api/rooms/lobby/messages", {"cmid": f"a{i}", "body": body})
    await sign_in(bob, server.url, "bob")
    await bob.click("#refreshRooms")
    await bob.click("[data-join=lobby]")
    await bob.wait_for_selector("#messages li.event[data-sender=bob]")
    carol = await open_page(browser, watch, DESKTOP)
    await sign_in(carol, server.url, "carol")
    await carol.fill("#createForm input", "carols-room")
    await carol.check("#createPrivate")
    await carol.click("#createForm button")
    await carol.wait_for_selector("#messages li.event[data-kind=join]")
    await send(carol, "a needle bob must not find")

    await bob.wait_for_function("() => !document.getElementById('searchForm').hidden")
    for _ in range(50):  # the indexer follows the store by a little
        await bob.fill("#searchInput", "needle")
        await bob.press("#searchInput", "Enter")
        await bob.wait_for_function(
            "() => !document.getElementById('searchSummary').textContent.startsWith('Searching')"
        )
        if await bob.locator("#searchList .search-hit").count() == 2:
            break
        await bob.wait_for_timeout(200)
    hits = bob.locator("#searchList .search-hit")
    assert await hits.count() == 2
    # Newest first: alice's join is seq 1, her message i seq 2 + i.
    assert [await hits.nth(i).get_attribute("data-seq") for i in range(2)] == ["72", "7"]
    older = hits.nth(1)
    assert await older.locator(".snippet").text_content() == f"the needle {XSS} is here"
    assert [await m.text_content() for m in await older.locator("mark").all()] == ["needle"]
    assert await bob.locator("#searchPanel img").count() == 0
    assert "#lobby" in (await older.locator(".where").text_content() or "")
    await screenshot(bob, tmp_path, "search-phone.png")

    # The older result opens the room there: read around it, marked, not yet live.
    await older.click()
    found = bob.locator("#messages li.msg.found")
    await found.wait_for()
    assert await found.get_attribute("data-seq") == "7"
    assert await found.locator(".body").text_content() == f"the needle {XSS} is here"
    assert await bob.locator("#messages img").count() == 0
    assert await bob.locator("#searchPanel").is_hidden()
    assert await bob.locator("#loadNewer").is_visible()
    assert await bob.locator("#messages li.msg .body", has_text="hay 79").count() == 0
    assert await bob.locator("#messages li.msg .body", has_text="hay 4").count() == 1  # read around it

    # Reading on reaches the newest messages; from then on the view is live again.
    await send(alice, "a live one after the jump")
    for _ in range(10):
        if await bob.locator("#loadNewer").is_hidden():
            break
        await bob.click("#loadNewer")
        await bob.wait_for_timeout(100)
    assert await bob.locator("#loadNewer").is_hidden()
    await bob.locator("#messages li.msg .body", has_text="a live one after the jump").wait_for()
    await send(alice, "and another, live")
    await bob.locator("#messages li.msg .body", has_text="and another, live").wait_for()
    seqs = [int(s) for s in await bob.eval_on_selector_all("#messages li[data-seq]", "l => l.map(e => e.dataset.seq)")]
    assert seqs == sorted(set(seqs)) and seqs[-1] - seqs[0] + 1 == len(seqs)  # one run, each once

    # Alice searches on a desktop: the results lie over the room's log.
    await alice.fill("#searchInput", "needle")
    await alice.press("#searchInput", "Enter")
    await alice.wait_for_function("() => document.querySelectorAll('#searchList .search-hit').length === 2")
    await screenshot(alice, tmp_path, "screenshot-search.png")

    # A query with no word is explained, not failed.
    await bob.fill("#searchInput", "***")
    await bob.press("#searchInput", "Enter")
    await bob.wait_for_function("() => document.getElementById('searchSummary').textContent.startsWith('Cannot')")
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)


async def test_a_result_in_a_thread_opens_the_thread_at_it_and_the_room_around_its_root(
    searching_server: ServerProcess, browser: Any
) -> None:
    """[R-CLIENT-74] [R-SEARCH-1] A result that is a reply in a thread, far below its root and far above the newest
    messages: the room is shown around the root (marked), the thread's panel opens with the root and its replies and
    the result marked; the reply is not a line of the room."""
    server = searching_server
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    await sign_in(alice, server.url, "alice")
    await alice.fill("#createForm input", "lobby")
    await alice.click("#createForm button")
    await alice.wait_for_selector("#messages li.event[data-kind=join]")
    token = await token_of(alice)
    # seq 2 the root; a reply at 33, the one searched for at 74; then 60 more, so the newest page holds neither.
    await post(server, token, "/api/rooms/lobby/messages", {"cmid": "root", "body": "dinner on friday?"})
    for i in range(100):
        body: dict[str, Any] = {"cmid": f"a{i}", "body": f"hay {i}"}
        if i == 30:
            body = {"cmid": "r1", "body": "an early reply", "thread": 2}
        if i == 71:
            body = {"cmid": "r2", "body": "with quince tart " + XSS, "thread": 2}
        await post(server, token, "/api/rooms/lobby/messages", body)
    bob = await open_page(browser, watch, DESKTOP)
    await sign_in(bob, server.url, "bob")
    await bob.click("#refreshRooms")
    await bob.click("[data-join=lobby]")
    await bob.wait_for_selector("#messages li.event[data-sender=bob]")
    assert await bob.locator("#messages li[data-seq='2']").count() == 0  # the root is not on his screen

    for _ in range(50):  # the indexer follows the store by a little
        await bob.fill("#searchInput", "quince")
        await bob.press("#searchInput", "Enter")
        await bob.wait_for_function(
            "() => !document.getElementById('searchSummary').textContent.startsWith('Searching')"
        )
        if await bob.locator("#searchList .search-hit").count() == 1:
            break
        await bob.wait_for_timeout(200)  # a wait helper's poll
    hit = bob.locator("#searchList .search-hit")
    assert await hit.get_attribute("data-seq") == "74"
    await hit.click()

    found = bob.locator("#threadMessages li.msg.found")
    await found.wait_for()
    assert await found.get_attribute("data-seq") == "74"
    assert await found.locator(".body").text_content() == "with quince tart " + XSS
    assert await bob.locator("#threadPanel").is_visible()
    in_thread = await bob.eval_on_selector_all("#threadMessages li.msg", "l => l.map(e => Number(e.dataset.seq))")
    assert in_thread == [2, 33, 74]
    root = bob.locator("#messages li.msg.found")
    assert await root.get_attribute("data-seq") == "2"
    assert await root.locator(".thread-summary .count").text_content() == "2 replies"
    assert await root.is_visible()  # scrolled to
    assert await bob.locator("#messages li[data-seq='74'], #messages li[data-seq='33']").count() == 0
    assert await bob.locator("#banner").is_hidden()
    assert await bob.locator("#threadMessages img, #messages img").count() == 0

    # The view ends before the newest messages: a later reply (one sent now, too) comes as the panel reads on.
    await post(server, token, "/api/rooms/lobby/messages", {"cmid": "r3", "body": "a late reply", "thread": 2})
    more = bob.locator("#threadMessages .load-newer-replies")
    for _ in range(10):
        if await more.count() == 0:
            break
        await more.click()
        await bob.wait_for_timeout(100)  # a wait helper's poll
    assert await more.count() == 0
    await bob.locator("#threadMessages li.msg .body", has_text="a late reply").wait_for()
    in_thread = await bob.eval_on_selector_all("#threadMessages li.msg", "l => l.map(e => Number(e.dataset.seq))")
    assert in_thread[:3] == [2, 33, 74] and len(in_thread) == 4
    assert await bob.locator("#threadMessages li.msg.found").get_attribute("data-seq") == "74"
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)

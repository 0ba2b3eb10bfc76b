"""Edits, deletions and reactions in the chat page: two browsers against a real ``roost serve``."""

from __future__ import annotations

from typing import Any

from ..integration.procs import ServerProcess
from .test_web import DESKTOP, PHONE, XSS, Page, Watch, open_page, send, sign_in, wait_shown


async def line(page: Page, body: str) -> Any:
    """The message line whose body is ``body``."""
    return page.locator("#messages li.msg", has=page.locator(".body", has_text=body))


async def test_edit_delete_and_reactions_are_seen_by_another_browser(server: ServerProcess, browser: Any) -> None:
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, PHONE)
    await sign_in(alice, server.url, "alice")
    await alice.fill("#createForm input", "lobby")
    await alice.click("#createForm button")
    await alice.wait_for_selector("#messages li.event[data-kind=join]")
    await sign_in(bob, server.url, "bob")
    await bob.click("#refreshRooms")
    await bob.click("[data-join=lobby]")
    await bob.wait_for_selector("#messages li.event[data-sender=bob]")

    await send(alice, "helo bob")
    await send(alice, "wrong room, sorry")
    await wait_shown(bob, ["helo bob", "wrong room, sorry"])
    assert await bob.locator("#messages li.msg .edit").count() == 0  # not his messages: no Edit

    # Alice edits in place; the new text is shown as text, marked "(edited)", in both browsers.
    first = await line(alice, "helo bob")
    await first.locator("button.edit").click()
    await alice.fill("#messages .editor", "hello bob " + XSS)
    await alice.press("#messages .editor", "Enter")
    for page in (alice, bob):
        edited = page.locator("#messages li.msg[data-edited=true]")
        await edited.wait_for()
        assert await edited.locator(".body").text_content() == "hello bob " + XSS
        assert "(edited)" in (await edited.locator(".status").text_content() or "")
        assert await page.locator("#log img").count() == 0

    # Bob reacts; alice adds hers through the chip: two.
    await (await line(bob, "hello bob")).locator("button.react").click()
    chip = alice.locator("#messages li.msg[data-edited=true] .reaction[data-emoji='👍']")
    await chip.wait_for()
    assert (await chip.text_content() or "").strip() == "👍 1"
    await chip.click()
    for page in (alice, bob):
        await page.wait_for_function(
            """() => [...document.querySelectorAll('#messages .reaction')].some(e => e.textContent === '👍 2')"""
        )
    assert await alice.get_attribute("#messages .reaction", "aria-pressed") == "true"

    # Alice deletes her second message (two clicks: arm, confirm); bob sees "message deleted".
    second = await line(alice, "wrong room, sorry")
    await second.locator("button.delete").click()
    await second.locator("button.delete").click()
    for page in (alice, bob):
        await page.locator("#messages li.msg.deleted .body", has_text="message deleted").wait_for()
        assert await page.locator("#messages li.msg .body", has_text="wrong room").count() == 0

    # A third browser that was never there reads the room's history: the final state, text gone.
    carol = await open_page(browser, watch, DESKTOP)
    await sign_in(carol, server.url, "carol")
    await carol.click("#refreshRooms")
    await carol.click("[data-join=lobby]")
    await carol.locator("#messages li.msg.deleted").wait_for()
    await carol.wait_for_function(
        """() => [...document.querySelectorAll('#messages .reaction')].some(e => e.textContent === '👍 2')"""
    )
    assert await carol.locator("#messages li.msg[data-edited=true] .body").text_content() == "hello bob " + XSS
    assert "wrong room" not in (await carol.locator("#messages").text_content() or "")
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)

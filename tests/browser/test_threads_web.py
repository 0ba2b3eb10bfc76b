"""Replies and threads in the chat page: chromium against a real ``roost serve``, two users and one who was offline.

* a reply quotes its message (sender and excerpt, as text) and a click shows the quoted message;
* a reply in a thread shows in the thread's side panel, not in the room; the root shows its reply count, the
  last reply's time and "new" until the thread is opened, where a "New replies" line marks them;
* a user who was offline (page closed) catches up on replies, an edit of a reply and a deleted one;
* markup and injection attempts in quoted excerpts and thread replies stay text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..integration.procs import ServerProcess
from .test_inbox_web import _as
from .test_web import DESKTOP, PHONE, XSS, Page, Watch, open_page, screenshot, send, sign_in, token_of, wait_shown


def line(page: Page, body: str, where: str = "#messages") -> Any:
    """The message line whose body is ``body``, in the room (or ``#threadMessages``)."""
    return page.locator(f"{where} li.msg", has=page.locator(".body", has_text=body))


async def reply_in_thread(page: Page, text: str) -> None:
    await page.fill("#threadBody", text)
    await page.press("#threadBody", "Enter")


async def test_replies_threads_and_an_offline_user_catching_up(
    server: ServerProcess, browser: Any, tmp_path: Path
) -> None:
    """[R-CLIENT-74] A reply shows its quote (textContent only) and jumps to the quoted message; replies in a thread
    are in its panel with a "New replies" line, the root counts them ("2 replies", "new" until opened); a user whose
    page was closed sees, when it opens again, the counts, the edited reply, the deleted one as deleted; injection
    attempts in quoted text and in thread replies stay text."""
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, DESKTOP)
    await sign_in(alice, server.url, "alice")
    await alice.fill("#createForm input", "plans")
    await alice.click("#createForm button")
    await alice.wait_for_selector("#messages li.event[data-kind=join]")
    await sign_in(bob, server.url, "bob")
    await bob.click("#refreshRooms")
    await bob.click("[data-join=plans]")
    await bob.wait_for_selector("#messages li.event[data-sender=bob]")
    carol_context = await browser.new_context(viewport=PHONE)
    carol = await carol_context.new_page()
    watch.attach(carol)
    await sign_in(carol, server.url, "carol")
    await carol.click("#refreshRooms")
    await carol.click("[data-join=plans]")
    await carol.wait_for_selector("#messages li.event[data-sender=carol]")
    carol_token = await token_of(carol)
    await carol.close()  # carol is offline from here on (her browser keeps her session and cursors)

    root_text = "friday: **dinner** at 8? " + XSS
    await send(alice, root_text)
    await send(alice, "unrelated")
    await wait_shown(bob, [root_text.replace("**", ""), "unrelated"])

    # Bob replies to the root with a quote; the quote is alice's name and the text as written, never markup.
    await (line(bob, "unrelated")).locator("button.reply").click()
    await bob.wait_for_selector("#replyBar:not([hidden])")
    assert "Replying to alice" in (await bob.text_content("#replyBar") or "")
    await bob.click("#cancelReply")
    await (line(bob, "friday:")).locator("button.reply").click()
    await send(bob, "count me in")
    for page in (alice, bob):
        reply = line(page, "count me in")
        await reply.wait_for()
        assert await reply.locator(".quote-who").text_content() == "alice"
        assert await reply.locator(".quote-text").text_content() == root_text
        assert await page.locator("#log img").count() == 0
    assert await bob.is_hidden("#replyBar")

    # Alice opens a thread on her root and replies there twice (with markup); bob sees the count, then the panel.
    await (line(alice, "friday:")).locator("button.open-thread").click()
    await alice.wait_for_selector("#threadPanel:not([hidden])")
    await reply_in_thread(alice, "I booked a table " + XSS)
    await reply_in_thread(alice, "for *six*")
    await line(alice, "for six", "#threadMessages").wait_for()
    assert await alice.locator("#messages li.msg", has=alice.locator(".body", has_text="booked")).count() == 0
    summary = line(bob, "friday:").locator(".thread-summary")
    await bob.wait_for_function(
        "() => document.querySelector('#messages .thread-summary .count')?.textContent === '2 replies'"
    )
    assert await summary.locator(".new-mark").count() == 1
    await summary.click()
    await bob.wait_for_selector("#threadPanel:not([hidden])")
    await line(bob, "for six", "#threadMessages").wait_for()
    marker = bob.locator("#threadMessages .unread-marker")
    assert await marker.text_content() == "New replies"
    bodies = await bob.eval_on_selector_all("#threadMessages li.msg .body", "els => els.map(e => e.textContent)")
    assert bodies == [root_text.replace("**", ""), "I booked a table " + XSS, "for six"]
    await bob.wait_for_function("() => !document.querySelector('#messages .thread-summary .new-mark')")

    # Bob quotes a reply inside the thread; alice edits her first reply; bob deletes nothing, alice deletes one.
    await (line(bob, "for six", "#threadMessages")).locator("button.reply").click()
    await reply_in_thread(bob, "six it is")
    quoted = line(alice, "six it is", "#threadMessages")
    await quoted.wait_for()
    assert await quoted.locator(".quote-text").text_content() == "for *six*"
    first = line(alice, "I booked a table", "#threadMessages")
    await first.locator("button.edit").click()
    await alice.fill("#threadMessages .editor", "I booked a table for 8pm")
    await alice.press("#threadMessages .editor", "Enter")
    await line(bob, "I booked a table for 8pm", "#threadMessages").wait_for()
    victim = line(alice, "for six", "#threadMessages")
    await victim.locator("button.delete").click()
    await victim.locator("button.delete").click()
    await bob.wait_for_selector("#threadMessages li.msg.deleted")
    await bob.wait_for_function(
        "() => document.querySelector('#messages .thread-summary .count')?.textContent === '2 replies'"
    )

    # A click on a quote shows the quoted message: in the room, or in its thread.
    await bob.click("#closeThread")
    await (line(bob, "count me in")).locator(".quote").click()
    await bob.wait_for_selector("#messages li.msg.flash")

    # Alice's page draws #plans again from memory (another room, then back): the same summary and tools.
    await alice.click("#closeThread")
    await alice.fill("#createForm input", "elsewhere")
    await alice.click("#createForm button")
    await alice.wait_for_selector("#roomTitle:text('#elsewhere')")
    await alice.click("[data-room=plans]")
    await alice.wait_for_function(
        "() => document.querySelector('#messages .thread-summary .count')?.textContent === '2 replies'"
    )
    assert await line(alice, "unrelated").locator("button.open-thread").count() == 1

    # Carol comes back: the counts, the edited reply, the deleted one, the quote, all from catching up.
    carol = await carol_context.new_page()
    watch.attach(carol)
    await carol.goto(server.url + "/")
    await carol.wait_for_selector("#conn[data-state=connected]")
    await carol.wait_for_selector("#roomTitle:text('#plans')")
    await wait_shown(carol, [root_text.replace("**", ""), "unrelated", "count me in"])
    await carol.wait_for_function(
        "() => document.querySelector('#messages .thread-summary .count')?.textContent === '2 replies'"
    )
    assert await line(carol, "friday:").locator(".thread-summary .new-mark").count() == 1
    assert await line(carol, "count me in").locator(".quote-text").text_content() == root_text
    await line(carol, "friday:").locator(".thread-summary").click()
    await line(carol, "six it is", "#threadMessages").wait_for()
    bodies = await carol.eval_on_selector_all("#threadMessages li.msg .body", "els => els.map(e => e.textContent)")
    assert bodies == [root_text.replace("**", ""), "I booked a table for 8pm", "message deleted", "six it is"]
    edited = line(carol, "I booked a table for 8pm", "#threadMessages")
    assert await edited.get_attribute("data-edited") == "true"
    assert await carol.locator("#threadMessages .unread-marker").count() == 1
    stored = await _as(server, carol_token, "GET", "/api/rooms/plans/messages?after=0&limit=100")
    kinds = [m["kind"] for m in stored["messages"] if m["kind"] in ("rich", "deleted")]
    assert kinds == ["rich", "rich", "deleted", "rich"]  # the deleted reply keeps its thread, not its text
    await screenshot(carol, tmp_path, "screenshot-threads.png")  # ROOST_UPDATE_SCREENSHOTS=1: docs/

    for page in (alice, bob, carol):
        assert await page.locator("#log img, #threadPanel img").count() == 0
        assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert watch.dialogs == [] and watch.errors == [], (watch.dialogs, watch.errors)

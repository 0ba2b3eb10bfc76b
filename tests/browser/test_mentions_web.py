"""Mentions and notifications in the chat page: chromium (notifications granted) against a real ``roost serve``.

The ``Notification`` constructor is replaced by a spy (an init script) that records each notification, and the
page is put "in the background" by the test (``document.visibilityState`` and ``document.hasFocus`` answer as it
says), so what the page would show on the desktop is checked without a desktop.
"""

from __future__ import annotations

from typing import Any

from ..integration.procs import ServerProcess
from .test_inbox_web import _as
from .test_web import DESKTOP, PHONE, XSS, Page, Watch, created, joined, send, sign_in, token_of, wait_shown

SPY = """
(() => {
  const Real = window.Notification;
  window.__notes = [];
  window.__asked = 0;
  class Spy {
    constructor(title, options = {}) {
      Object.assign(this, { title, body: options.body, tag: options.tag, onclick: null });
      window.__notes.push(this);
    }
    close() {}
    static get permission() { return Real.permission; }
    static requestPermission() { window.__asked += 1; return Real.requestPermission(); }
  }
  window.Notification = Spy;
  window.__hidden = false;
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get() { return window.__hidden ? "hidden" : "visible"; },
  });
  Document.prototype.hasFocus = function () { return !window.__hidden; };
})();
"""


async def open_spied(browser: Any, watch: Watch, viewport: dict[str, int], *, granted: bool = True) -> Page:
    # Without a grant the page's origin (127.0.0.1) is at "default": asked, not refused (an empty list denies).
    granting: dict[str, Any] = {"permissions": ["notifications"]} if granted else {}
    context = await browser.new_context(viewport=viewport, **granting)
    context.set_default_timeout(15_000)
    await context.add_init_script(SPY)
    page = await context.new_page()
    watch.attach(page)
    return page


async def notes(page: Page) -> list[dict[str, str]]:
    return list(await page.evaluate("window.__notes.map(n => ({title: n.title, body: n.body, tag: n.tag}))"))


async def background(page: Page, hidden: bool) -> None:
    await page.evaluate("h => { window.__hidden = h; document.dispatchEvent(new Event('visibilitychange')); }", hidden)


def badge(room: str, what: str) -> str:
    return f"() => document.querySelector(\"[data-room='{room}'] .{what}\")?.textContent ?? ''"


async def test_mentions_notifications_and_levels_between_users(server: ServerProcess, browser: Any) -> None:
    """[R-CLIENT-75] The page highlights the mentions the server listed (text only), counts unread mentions apart
    ("@1" beside the unread count), raises a desktop notification in the background for a mention and a direct
    message (not for a plain message of a room on "mentions", nor anything of a room set to "none", a level kept on
    the server and seen by the user's other device), counts them in the title, opens the message when the
    notification is clicked, asks for the permission only from its button; a member's @room is refused; a
    mentioned non-member is told nothing; a user offline meanwhile finds the mention counts and highlights."""
    watch = Watch()
    alice = await open_spied(browser, watch, DESKTOP)
    bob = await open_spied(browser, watch, DESKTOP)
    await created(alice, server.url, "alice", "plans")
    await joined(bob, server.url, "bob", "plans")
    assert await bob.is_hidden("#enableNotifications")  # granted already: nothing to ask
    carol_context = await browser.new_context(viewport=PHONE)
    carol = await carol_context.new_page()
    watch.attach(carol)
    await sign_in(carol, server.url, "carol")
    await carol.click("#refreshRooms")
    await carol.click("[data-join=plans]")
    await carol.wait_for_selector("#messages li.event[data-sender=carol]")
    await carol.click("#menu")
    await carol.fill("#createForm input", "garden")  # her page opens on this one when she comes back
    await carol.click("#createForm button")
    await carol.wait_for_selector("#roomTitle:text('#garden')")
    await carol.close()  # carol is offline from here on

    # Bob's page goes to the background. A plain message of a room on "mentions" is unread, not notified.
    await background(bob, True)
    await send(alice, "lunch?")
    await bob.wait_for_function(f"() => ({badge('plans', 'badge')})() === '1'")
    assert await notes(bob) == [] and await bob.title() == "Roost"

    # A mention: highlighted, "@1", notified (its text as text), in the title.
    mention = "@bob can you book? " + XSS
    await send(alice, mention)
    await bob.wait_for_function(f"() => ({badge('plans', 'mentions')})() === '@1'")
    assert await bob.get_attribute("[data-room=plans] .mentions", "aria-label") == "1 mention"
    assert await notes(bob) == [{"title": "alice mentioned you in #plans", "body": mention, "tag": "plans:5"}]
    assert await bob.title() == "(1) Roost"
    highlighted = bob.locator("#messages .body .mention.me")
    assert await highlighted.text_content() == "@bob" and await highlighted.get_attribute("data-user") == "bob"
    assert await bob.locator("#log img").count() == 0

    # A direct message notifies (its default level is "all"); clicking the notification opens it.
    dm = (await _as(server, await token_of(alice), "POST", "/api/dm", {"user": "bob"}))["room"]
    await _as(server, await token_of(alice), "POST", f"/api/rooms/{dm}/messages", {"cmid": "d1", "body": "psst"})
    await bob.wait_for_function("() => window.__notes.length === 2")
    assert (await notes(bob))[1] == {"title": "alice", "body": "psst", "tag": f"{dm}:3"}
    await bob.wait_for_function("() => document.title === '(2) Roost'")
    await bob.evaluate("window.__notes[1].onclick()")
    await bob.wait_for_selector("#roomTitle:text('@alice')")
    await wait_shown(bob, ["psst"])
    await background(bob, False)  # bob reads the conversation, then #plans
    await bob.click("[data-room=plans]")
    await bob.wait_for_selector("#roomTitle:text('#plans')")  # open before what follows is sent or read
    await bob.wait_for_function("() => document.title === 'Roost'")

    # Bob mutes #plans: kept on the server, seen by his other device; nothing of it notifies or counts now.
    bob_phone = await open_spied(browser, watch, PHONE)
    await sign_in(bob_phone, server.url, "bob")
    if await bob_phone.is_visible("#menu") and not await bob_phone.is_visible("[data-room=plans]"):
        await bob_phone.click("#menu")
    await bob_phone.click("[data-room=plans]")
    await bob_phone.wait_for_function("() => document.querySelector('#notifyLevel').value === 'mentions'")
    await bob.select_option("#notifyLevel", "none")
    await bob_phone.wait_for_function("() => document.querySelector('#notifyLevel').value === 'none'")
    # The phone leaves: with #plans open and in view there, it would read the next message at once (read positions
    # are the user's, shared by devices), and the desktop would rightly count nothing.
    await bob_phone.close()
    rooms = await _as(server, await token_of(bob), "GET", "/api/rooms")
    assert rooms["notify"] == {"plans": "none"}
    await bob.click(f"[data-room='{dm}']")
    await bob.wait_for_selector("#roomTitle:text('@alice')")  # #plans is no longer open (read on arrival)
    await background(bob, True)
    await send(alice, "@bob once more")
    await bob.wait_for_function(f"() => ({badge('plans', 'mentions')})() === '@1'")
    assert len(await notes(bob)) == 2 and await bob.title() == "Roost"
    assert await bob.locator("[data-room=plans] .muted").count() == 1

    # A member's @room is refused (not stored); the owner's reaches everyone; a mentioned non-member is told nothing.
    await background(bob, False)
    await bob.click("[data-room=plans]")
    await bob.wait_for_selector("#roomTitle:text('#plans')")  # open before what follows is sent or read
    await send(bob, "@room anyone?")
    await bob.wait_for_selector("#pending li[data-state=failed]")
    assert "4403" in (await bob.text_content("#pending li[data-state=failed] .status") or "")
    await send(alice, "@room standup at 10, @carol leads")
    await send(alice, "@mallory see this")
    mallory_token = (await _as(server, "", "POST", "/api/login", {"name": "mallory"}))["token"]
    assert "plans" not in (await _as(server, mallory_token, "GET", "/api/rooms"))["rooms"]
    told = await _as(server, mallory_token, "GET", "/api/rooms/~u:mallory/messages?after=0")
    assert told["messages"] == []
    await wait_shown(alice, ["@mallory see this"])

    # Carol comes back: her mentions counted apart from her unread messages, and highlighted.
    carol = await carol_context.new_page()
    watch.attach(carol)
    await carol.goto(server.url + "/")
    await carol.wait_for_selector("#conn[data-state=connected]")
    await carol.click("#menu")
    await carol.wait_for_function(f"() => ({badge('plans', 'mentions')})() === '@1'")
    assert await carol.title() == "(1) Roost"
    await carol.click("[data-room=plans]")
    line = carol.locator("#messages li.msg", has=carol.locator(".body", has_text="standup"))
    await line.wait_for()
    spans = await line.locator(".mention").evaluate_all("els => els.map(e => [e.textContent, e.className])")
    assert spans == [["@room", "mention me"], ["@carol", "mention me"]]

    # A page without the permission shows the button, and asks only when it is clicked.
    dave = await open_spied(browser, watch, DESKTOP, granted=False)
    await sign_in(dave, server.url, "dave")
    assert await dave.is_visible("#enableNotifications")
    assert await dave.evaluate("window.__asked") == 0
    await dave.click("#enableNotifications")
    await dave.wait_for_function("() => window.__asked === 1")

    for page in (alice, bob, carol):
        assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert watch.dialogs == [] and watch.errors == [], (watch.dialogs, watch.errors)

"""The chat page and roost.js in a real browser against a real ``roost serve``.

* the JavaScript decoder accepts and refuses the same frames as the server's (tests/vectors/frames.json);
* two users chat; the server is killed with ``kill -9`` and restarted while one of them keeps sending;
  both end with the same messages, each once, in the same order;
* a reload while the server is down keeps the unsent messages and the cursors; they are sent once after;
* markup in a message is shown as text; history pages load on scrolling up; unread counts and the unread
  marker; a send that fails for good offers retry; direct conversations; typing; a phone-sized screen.

``ROOST_UPDATE_SCREENSHOTS=1`` also writes docs/screenshot.png and docs/screenshot-phone.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import typing
from pathlib import Path
from typing import Any

import aiohttp

from roost.protocol import frames

from ..integration.procs import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "frames.json").read_text(encoding="utf-8"))
WEB = ROOT / "src" / "roost" / "web"
XSS = "<img src=x onerror=alert(1)>"
DESKTOP = {"width": 1200, "height": 760}
PHONE = {"width": 390, "height": 760}
T = 15_000  # ms: the longest any single UI expectation may take (a reconnect backs off up to 5 s)

Page = Any


# ---- helpers ---------------------------------------------------------------------------------


class Watch:
    """Records what must never happen on a page: dialogs (alert from injected markup), uncaught errors and
    Content-Security-Policy violations."""

    def __init__(self) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, page: Page) -> None:
        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            task = asyncio.ensure_future(dialog.dismiss())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.errors.append(message.text)


async def open_page(browser: Any, watch: Watch, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(viewport=viewport)
    context.set_default_timeout(T)
    page = await context.new_page()
    watch.attach(page)
    return page


async def sign_in(page: Page, url: str, name: str) -> None:
    await page.goto(url + "/")
    await page.fill("#loginName", name)
    await page.click("#loginForm button")
    await page.wait_for_selector("#conn[data-state=connected]")


async def created(page: Page, url: str, user: str, room: str) -> None:
    """``user`` signs in and creates ``room``; their page shows their own join."""
    await sign_in(page, url, user)
    await page.fill("#createForm input", room)
    await page.click("#createForm button")
    await page.wait_for_selector("#messages li.event[data-kind=join]")


async def joined(page: Page, url: str, user: str, room: str) -> None:
    """``user`` signs in and joins ``room`` from the room list; their page shows their own join."""
    await sign_in(page, url, user)
    await page.click("#refreshRooms")
    await page.click(f"[data-join={room}]")
    await page.wait_for_selector(f"#messages li.event[data-sender={user}]")


async def send(page: Page, text: str) -> None:
    await page.fill("#body", text)
    await page.press("#body", "Enter")


async def shown(page: Page) -> list[tuple[int, str, str]]:
    """(seq, sender, body) of the text messages on screen, top to bottom."""
    rows = await page.eval_on_selector_all(
        "#messages li.msg",
        "els => els.map(e => [Number(e.dataset.seq), e.dataset.sender, e.querySelector('.body').textContent])",
    )
    return [(int(seq), sender, body) for seq, sender, body in rows]


async def wait_shown(page: Page, bodies: list[str]) -> None:
    """Until every body is on screen as a stored message and nothing is pending."""
    await page.wait_for_function(
        """bodies => {
            const have = new Set([...document.querySelectorAll('#messages li.msg .body')].map(e => e.textContent));
            return bodies.every(b => have.has(b)) && document.querySelectorAll('#pending li').length === 0;
        }""",
        arg=bodies,
        timeout=T,
    )


async def stored_texts(server: ServerProcess, token: str, room: str) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    after = 0
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        while True:
            async with http.get(f"{server.url}/api/rooms/{room}/messages?after={after}&limit=500") as resp:
                page = await resp.json()
            out += [(m["seq"], m["sender"], m["body"]) for m in page["messages"] if m["kind"] == "text"]
            if not page["has_more"]:
                return out
            after = page["messages"][-1]["seq"]


async def token_of(page: Page) -> str:
    session = await page.evaluate("JSON.parse(localStorage.getItem('roost-page:session'))")
    return str(session["token"])


async def screenshot(page: Page, tmp: Path, name: str) -> None:
    await page.screenshot(path=str(tmp / name))
    if os.environ.get("ROOST_UPDATE_SCREENSHOTS") == "1" and name.startswith("screenshot"):
        await page.screenshot(path=str(ROOT / "docs" / name))


def assert_exact(rows: list[tuple[int, str, str]]) -> None:
    seqs = [seq for seq, _, _ in rows]
    assert seqs == sorted(set(seqs)), f"not each once in seq order: {seqs}"


# ---- tests -----------------------------------------------------------------------------------


def test_the_web_files_never_build_markup_from_strings() -> None:
    names = sorted(p.name for p in WEB.iterdir() if p.suffix in (".html", ".js"))
    assert {"index.html", "app.js", "roost.js", "protocol.js", "sync.js", "relations.js", "sw.js"} <= set(names)
    for name in names:
        text = (WEB / name).read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{name} uses {sink}"


def test_every_module_of_the_client_is_served() -> None:
    """roost.js imports its modules by relative URL: each must be a route (gateway/page.py), or the page breaks."""
    from roost.gateway.page import WEB_FILES

    vendored = {str(p.relative_to(WEB)) for p in (WEB / "vendor").rglob("*.mjs")}
    assert vendored and set(WEB_FILES) == {p.name for p in WEB.iterdir() if p.suffix in (".js", ".css")} | vendored


def test_the_service_worker_keeps_every_module_of_the_page() -> None:
    """The page loads from sw.js's cache while the server is down: a module missing from its shell breaks the page
    exactly then (an import that fails), which nothing else shows."""
    import re

    from roost.gateway.page import WEB_FILES

    shell = re.search(r"const SHELL = \[(.*?)\];", (WEB / "sw.js").read_text(encoding="utf-8"))
    assert shell is not None
    cached = set(re.findall(r'"/([^"]*)"', shell.group(1)))
    page = {name for name in WEB_FILES if not name.startswith("vendor/")}  # the page speaks JSON: no codec
    assert cached == {""} | (page - {"sw.js"})


async def test_the_js_decoder_agrees_with_the_python_one(server: ServerProcess, browser: Any) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(server.url + "/")
    result = await page.evaluate(
        """async (vectors) => {
            const roost = await import('/roost.js');
            const check = (f) => roost.checkServerFrame(f);
            const typeOf = (f) => { const r = check(f); return r.ok ? r.frame.type : 'REFUSED: ' + r.reason; };
            const msg = '{"type":"msg","room":"r","seq":1,"cmid":"c","sender":"s","body":"","ts":1}';
            return {
                types: roost.SERVER_FRAME_TYPES,
                valid: vectors.valid.map(v => typeOf(v.frame)),
                invalid: vectors.invalid.map(v => check(v.frame).ok),
                batches: vectors.batches.map(b => roost.splitFrames(b.data).map(typeOf)),
                kind: roost.decodeServerFrame(msg).kind,
            };
        }""",
        VECTORS,
    )
    python_types = {cls.__struct_config__.tag for cls in typing.get_args(frames.ServerFrame)}
    assert set(result["types"]) == python_types, "roost.js and roost.protocol.frames know different server frames"
    for case, got in zip(VECTORS["valid"], result["valid"], strict=True):
        assert got == case["type"], case["name"]
    for case, accepted in zip(VECTORS["invalid"], result["invalid"], strict=True):
        assert not accepted, f"roost.js accepts an invalid frame: {case['name']}"
    assert result["batches"] == [b["types"] for b in VECTORS["batches"]]
    assert result["kind"] == "text"


async def test_two_users_chat_through_kill_9_and_a_reload(server: ServerProcess, browser: Any, tmp_path: Path) -> None:
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, PHONE)
    await sign_in(alice, server.url, "alice")
    await alice.fill("#createForm input", "lobby")
    await alice.click("#createForm button")
    await alice.wait_for_selector("#messages li.event[data-kind=join]")

    await sign_in(bob, server.url, "bob")  # a phone: with no room yet, the room list is what it shows
    await bob.click("#refreshRooms")
    await bob.click("[data-join=lobby]")
    await bob.wait_for_selector("#messages li.event[data-sender=bob]")
    assert await bob.is_hidden("#sidebar")  # a room is open: the phone shows the conversation only

    # They chat; markup is text.
    await send(alice, "hi bob")
    await wait_shown(bob, ["hi bob"])
    await send(bob, "hi alice")
    await send(bob, XSS)
    await wait_shown(alice, ["hi alice", XSS])
    assert await alice.locator("#log img").count() == 0
    assert (await shown(alice))[-1][2] == XSS
    await wait_shown(bob, [XSS])
    await bob.wait_for_selector("#typing:not(.on)")
    await bob.wait_for_function("() => getComputedStyle(document.querySelector('#typing')).opacity === '0'")
    await screenshot(bob, tmp_path, "screenshot-phone.png")

    # Bob types: alice sees it.
    await bob.fill("#body", "hmm")
    await alice.wait_for_selector("#typing.on")
    assert await alice.text_content("#typing") == "bob is typing…"
    await bob.fill("#body", "")

    # Alice keeps sending while the server is killed with kill -9 and restarted.
    sent = [f"m{i:02d}" for i in range(30)]
    saw_pending = asyncio.Event()

    async def typist() -> None:
        for i, text in enumerate(sent):
            await send(alice, text)
            if i > 10 and await alice.locator("#pending li[data-state=pending]").count():
                saw_pending.set()
            await asyncio.sleep(0.06)  # the subject: sends spread over the outage

    async def chaos() -> None:
        await alice.wait_for_function("() => document.querySelectorAll('#messages li.msg').length >= 12")
        server.kill()
        await alice.wait_for_selector("#conn:not([data-state=connected])")
        await asyncio.sleep(1.0)  # the subject: down for a while, with alice typing
        await server.start()

    await asyncio.gather(typist(), chaos())
    await wait_shown(alice, sent)
    await wait_shown(bob, sent)
    assert saw_pending.is_set(), "messages sent while the server was down should show as pending"

    # A reload while the server is down keeps the unsent messages and the cursor.
    await alice.wait_for_function("() => navigator.serviceWorker.controller !== null")
    cursor = await alice.evaluate("window.roostClient.cursor('lobby')")
    server.kill()
    await alice.wait_for_selector("#conn:not([data-state=connected])")
    offline = ["typed offline 1", "typed offline 2", "typed offline 3"]
    for text in offline:
        await send(alice, text)
    await alice.wait_for_function("() => document.querySelectorAll('#pending li[data-state=pending]').length === 3")
    outbox = await alice.evaluate("window.roostClient.outbox")
    assert [e["body"] for e in outbox] == offline

    frames_sent: list[dict[str, Any]] = []
    alice.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda payload: frames_sent.append(json.loads(payload))),
    )
    await alice.reload()  # the page comes from the service worker's cache: the server is down
    await alice.wait_for_function("() => document.querySelectorAll('#pending li[data-state=pending]').length === 3")
    assert await alice.eval_on_selector_all("#pending li .body", "els => els.map(e => e.textContent)") == offline
    assert (await shown(alice))[-1][2] == sent[-1]  # the conversation as saved before the reload
    assert await alice.evaluate("window.roostClient.cursor('lobby')") == cursor
    assert [e["cmid"] for e in await alice.evaluate("window.roostClient.outbox")] == [e["cmid"] for e in outbox]
    await alice.wait_for_selector("#conn[data-state=reconnecting]")
    await screenshot(alice, tmp_path, "reconnecting.png")

    await server.start()
    await wait_shown(alice, offline)
    await wait_shown(bob, offline)
    subscribes = [f for f in frames_sent if f["type"] == "subscribe" and f["room"] == "lobby"]
    assert subscribes and subscribes[0]["after"] == cursor["seq"] and subscribes[0]["epoch"] == cursor["epoch"]
    resent = [f["cmid"] for f in frames_sent if f["type"] == "send"]
    assert resent[:3] == [e["cmid"] for e in outbox]

    # Both show the same messages, each once, in the same order, and so does the store.
    stored = await stored_texts(server, await token_of(alice), "lobby")
    on_alice, on_bob = await shown(alice), await shown(bob)
    assert_exact(on_alice)
    assert on_alice == on_bob == stored
    bodies = [body for _, _, body in stored]
    assert bodies == ["hi bob", "hi alice", XSS, *sent, *offline]
    assert await alice.evaluate("window.roostClient.outbox.length") == 0
    assert await alice.evaluate("localStorage.length") > 0

    assert watch.dialogs == [] and watch.errors == []


async def test_history_unread_failures_direct_messages_and_typing(
    server: ServerProcess, browser: Any, tmp_path: Path
) -> None:
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, DESKTOP)
    await sign_in(alice, server.url, "alice")
    await alice.fill("#createForm input", "big")
    await alice.click("#createForm button")
    await alice.wait_for_selector("#messages li.event[data-kind=join]")
    await sign_in(bob, server.url, "bob")
    await bob.click("#refreshRooms")
    await bob.click("[data-join=big]")
    await bob.wait_for_selector("#messages li.event[data-sender=bob]")
    await bob.fill("#createForm input", "side")
    await bob.click("#createForm button")
    await bob.wait_for_selector("#roomTitle:text('#side')")

    # 70 messages arrive in "big" while bob reads "side": its badge counts them.
    token = await token_of(alice)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for i in range(70):
            body = {"cmid": f"pre-{i}", "body": f"p{i:02d}"}
            async with http.post(f"{server.url}/api/rooms/big/messages", json=body) as resp:
                assert resp.status == 201
    badge = bob.locator("[data-room=big] .badge")
    await badge.wait_for()
    await bob.wait_for_function("() => document.querySelector('[data-room=big] .badge').textContent === '70'")

    # Opening it: the newest page first, then older pages on scrolling up (here at once: the view starts at the
    # unread marker, which lies above the newest page).
    await bob.click("[data-room=big]")
    await bob.wait_for_function("() => document.querySelectorAll('#messages li.msg').length >= 50")
    assert await bob.locator("[data-room=big] .badge").count() == 0
    assert await bob.locator(".unread-marker").count() == 1
    await bob.eval_on_selector("#log", "log => { log.scrollTop = 0; }")
    await bob.wait_for_function("() => document.querySelectorAll('#messages li.msg').length === 70")
    assert [body for _, _, body in await shown(bob)] == [f"p{i:02d}" for i in range(70)]
    following = await bob.evaluate("document.querySelector('.unread-marker').nextElementSibling.textContent")
    assert "p00" in following  # unread begins right after bob's join
    assert await bob.is_hidden("#loadOlder")
    await screenshot(bob, tmp_path, "history.png")

    # Everything is read now: after a reload the room opens at the bottom with one page, and scrolling up
    # loads the older ones.
    await bob.reload()
    await bob.wait_for_function("() => document.querySelectorAll('#messages li.msg').length === 50")
    assert await bob.locator(".unread-marker").count() == 0
    assert await bob.is_visible("#loadOlder")
    await bob.eval_on_selector("#log", "log => { log.scrollTop = 0; }")
    await bob.wait_for_function("() => document.querySelectorAll('#messages li.msg').length === 70")
    assert [body for _, _, body in await shown(bob)] == [f"p{i:02d}" for i in range(70)]

    # A message the server refuses for good (4413: too large) offers retry and discard.
    await send(bob, "x" * 17_000)
    failed = bob.locator("#pending li[data-state=failed]")
    await failed.wait_for()
    assert "4413" in await failed.text_content()
    await failed.locator("button.retry").click()
    await bob.wait_for_function("() => document.querySelectorAll('#pending li[data-state=failed]').length === 1")
    await bob.locator("#pending li[data-state=failed] button.discard").click()
    assert await bob.locator("#pending li").count() == 0
    assert await bob.evaluate("window.roostClient.failed.length") == 0

    # A direct conversation: alice starts it, bob finds it in his list.
    first = "Hi Bob! The 0.2 release build is ready, could you give it a look?"
    await alice.fill("#dmForm input", "bob")
    await alice.click("#dmForm button")
    await alice.wait_for_selector("#roomTitle:text('@bob')")
    await send(alice, first)
    await wait_shown(alice, [first])
    await bob.click("#refreshRooms")
    await bob.click("[data-room='dm:alice:bob']")
    await wait_shown(bob, [first])
    replies = ["On it.", "Two small comments in `#big`, see https://roost.example/r/0.2 - otherwise **good to go**."]
    for text in replies:
        if text.startswith("Two"):  # a reply quoting alice's message (test_threads_web.py)
            await bob.locator("#messages li.msg[data-sender=alice]").first.locator("button.reply").click()
        await send(bob, text)
    rendered = ["On it.", "Two small comments in #big, see https://roost.example/r/0.2 - otherwise good to go."]
    await wait_shown(alice, rendered)  # the markdown subset: code, a link, bold (test_markdown_web.py)
    await alice.wait_for_selector("#online:text('online')")  # presence: bob follows the conversation
    on_it = alice.locator("#messages li.msg[data-sender=bob]").first
    await on_it.locator("button.react-more").click()  # the emoji picker (test_markdown_web.py)
    await on_it.locator(".picker .pick[data-emoji='🚀']").click()
    await bob.locator("#messages .reaction[data-emoji='🚀']").wait_for()

    # Typing shows, then fades on its own.
    await bob.fill("#body", "thinking")
    await alice.wait_for_selector("#typing.on")
    await alice.wait_for_selector("#typing:not(.on)", timeout=8000)
    await bob.fill("#body", "")

    # Keyboard: Alt+Down moves to the next room.
    await alice.focus("#body")
    await alice.keyboard.press("Alt+ArrowDown")
    await alice.wait_for_selector("#roomTitle:text('#big')")
    await alice.click("[data-room='dm:alice:bob']")
    await wait_shown(alice, [first, *rendered])

    # Bob writes in #big while alice reads the conversation: her badge counts it; then he types to her.
    await bob.click("[data-room=big]")
    await send(bob, "@alice comment 1: the changelog misses the web client.")
    await send(bob, "Comment 2: bump the version in pyproject.toml.")
    await alice.wait_for_function("() => document.querySelector('[data-room=big] .badge')?.textContent === '2'")
    await alice.wait_for_function("() => document.querySelector('[data-room=big] .mentions')?.textContent === '@1'")
    await bob.click("[data-room='dm:alice:bob']")
    await bob.fill("#body", "And")
    await alice.wait_for_selector("#typing.on")
    await alice.fill("#body", "Thanks! Fixing both now.")
    await alice.wait_for_function("() => getComputedStyle(document.querySelector('#typing')).opacity === '1'")
    await screenshot(alice, tmp_path, "screenshot.png")
    assert watch.dialogs == [] and watch.errors == []


async def test_a_private_room_invite_kick_and_their_events(server: ServerProcess, browser: Any) -> None:
    """Alice creates a private room; bob cannot see or join it until /invite; /kick removes him from his
    page at once, and both pages show the membership events as text (names included, never markup)."""
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, DESKTOP)
    await sign_in(alice, server.url, "alice")
    await sign_in(bob, server.url, "bob")
    await alice.fill("#createForm input", "plans")
    await alice.check("#createPrivate")
    await alice.click("#createForm button")
    await alice.wait_for_selector("#roomTitle:text('#plans')")
    await bob.click("#refreshRooms")
    assert await bob.locator("[data-join=plans]").count() == 0  # a private room is not listed
    await bob.fill("#createForm input", "plans")  # create-or-join: refused without an invitation
    await bob.click("#createForm button")
    await bob.wait_for_selector("#roomError:has-text('invitation')")

    await send(alice, "/invite bob")
    await alice.wait_for_selector("#messages li.event[data-kind=invite]:has-text('bob was invited by alice')")
    await bob.click("#createForm button")
    await bob.wait_for_selector("#roomTitle:text('#plans')")
    await send(bob, "thanks for the invite")
    await wait_shown(alice, ["thanks for the invite"])

    await send(alice, "/kick bob")
    await alice.wait_for_selector("#messages li.event[data-kind=kick]:has-text('bob was removed by alice')")
    await bob.wait_for_function("() => !document.querySelector(\"[data-room='plans']\")")  # gone from his list
    await send(alice, "/kick nobody")  # refused: the banner says why, nothing is sent as a message
    await alice.wait_for_selector("#banner:has-text('not a member')")
    assert "/kick" not in " ".join(body for _, _, body in await shown(alice))
    assert watch.dialogs == [] and watch.errors == []

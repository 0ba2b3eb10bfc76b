"""Formatting, links and the emoji picker in the chat page: chromium against a real ``roost serve``.

* tests/vectors/markdown.json through /markdown.js in the real DOM: each case builds exactly its tree;
* two users: one sends markdown, URLs and injection attempts (in messages, an edit and a reaction), the
  other sees safe DOM only (allowed elements, http/https/mailto links with rel="noopener noreferrer" and
  target=_blank, no script run, no dialog, no CSP violation);
* the emoji picker's reaction is seen by the other user; no seq number is shown;
* a direct conversation with one message counts 1 unread, not its membership events too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp

from ..integration.procs import ServerProcess
from ..vectors.test_markdown_vectors import ALLOWED, with_link_attributes
from .test_web import DESKTOP, XSS, Page, Watch, created, joined, open_page, send, sign_in, token_of, wait_shown

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "markdown.json").read_text(encoding="utf-8"))

# The DOM below an element as the vector trees write it: [tag, {every attribute}?, ...children].
SERIALIZE = """
function tree(node) {
  if (node.nodeType === Node.TEXT_NODE) return node.data;
  const attrs = {};
  for (const a of node.attributes) attrs[a.name] = a.value;
  return [node.localName, ...(Object.keys(attrs).length ? [attrs] : []), ...[...node.childNodes].map(tree)];
}
"""

INJECTIONS = [
    "[click me](javascript:alert(1))",
    "[a](JaVaScRiPt:alert(2)) [b](data:text/html,<script>alert(3)</script>) "
    "[c](vbscript:msgbox(4)) [d](//evil.example/x)",
    "<script>alert(5)</script>" + XSS,
    "**" + XSS + "** and `<b>not bold</b>`",
    "```\n<svg onload=alert(6)>\n[x](javascript:alert(7))\n```",
    'see https://roost.example/a"onmouseover="alert(8) and [bank](https://bank.example@evil.example/)',
    "> a quote with [the docs](https://roost.example/docs) and *emphasis*\n- item https://roost.example/x_(y).\n1. one",
    "[mail](mailto:alice@example.com) [rel](/api/rooms) [frag](#top)",
]
EXPECTED_LINKS = [  # (href, text) of every link those messages make, in order
    ("https://roost.example/a", "https://roost.example/a"),
    ("https://roost.example/docs", "the docs"),
    ("https://roost.example/x_(y)", "https://roost.example/x_(y)"),
    ("mailto:alice@example.com", "mail"),
]


async def body_trees(page: Page, selector: str) -> list[Any]:
    return list(
        await page.eval_on_selector_all(
            selector, f"els => {{ {SERIALIZE}; return els.map(e => [...e.childNodes].map(tree)); }}"
        )
    )


async def assert_safe_dom(page: Page) -> None:
    """Every element under a message body is of the allowed set; every link is http(s)/mailto and opens apart."""
    found = await page.eval_on_selector_all(
        "#log .body *, #threadPanel .body *",
        "els => els.map(e => [e.localName, [...e.attributes].map(a => [a.name, a.value])])",
    )
    for tag, attrs in found:
        names = {name for name, _ in attrs}
        if tag == "span":  # a mention the server listed, highlighted by the page (text only) [R-CLIENT-75]
            assert names <= {"class", "data-user"} and dict(attrs)["class"] in ("mention", "mention me"), attrs
            continue
        assert tag in ALLOWED, tag
        extra = {"rel", "target", "title"} if tag == "a" else set()
        assert names <= set(ALLOWED[tag]) | extra, (tag, attrs)
        if tag == "a":
            values = dict(attrs)
            assert re.match(r"^(https?://|mailto:)", values["href"]), values
            assert values["rel"] == "noopener noreferrer" and values["target"] == "_blank", values
    quoted = await page.eval_on_selector_all(
        "#log .quote *, #threadPanel .quote *", "els => els.map(e => [e.localName, e.className, e.attributes.length])"
    )
    assert all(q in (["span", "quote-who", 1], ["span", "quote-text", 1]) for q in quoted), quoted
    hrefs = await page.eval_on_selector_all(
        ", ".join(
            f"{where} {what}"
            for where in ("#log", "#threadPanel")
            for what in ("[href]", "[src]", "[onerror]", "[onload]", "script", "img", "svg", "iframe")
        ),
        "els => els.map(e => e.outerHTML.slice(0, 80))",
    )
    assert all(h.startswith("<a ") for h in hrefs), hrefs
    assert not await page.evaluate(
        "document.body.innerHTML.includes('javascript:alert') && !!document.querySelector('[href^=javascript i]')"
    )


async def test_the_page_renders_the_vectors_in_the_real_dom(server: ServerProcess, browser: Any) -> None:
    """[R-SEC-70] /markdown.js in chromium builds each case's tree, links with their fixed attributes."""
    page = await (await browser.new_context()).new_page()
    await page.goto(server.url + "/")
    built = await page.evaluate(
        f"""async (cases) => {{
            const md = await import('/markdown.js');
            {SERIALIZE}
            return cases.map(c => {{
                const div = document.createElement('div');
                div.append(md.render(c.text));
                return [...div.childNodes].map(tree);
            }});
        }}""",
        VECTORS["cases"],
    )
    for case, tree in zip(VECTORS["cases"], built, strict=True):
        assert tree == with_link_attributes(case["tree"]), case["name"]
    refused = await page.evaluate(
        """async (cases) => {
            const md = await import('/markdown.js');
            return cases.map(c => { try { md.toDom(c.tree); return false; } catch { return true; } });
        }""",
        VECTORS["refused"],
    )
    assert refused == [True] * len(VECTORS["refused"])


async def test_markdown_links_and_injections_between_two_users(server: ServerProcess, browser: Any) -> None:
    """[R-SEC-71] What one user writes (messages, an edit, a reaction, a reply's quote, a reply in a thread, a
    mention) reaches the other as safe DOM only.
    [R-CLIENT-71] The picker's reaction is seen by the other user; seq numbers are not shown."""
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, DESKTOP)
    await created(alice, server.url, "alice", "fmt")
    await joined(bob, server.url, "bob", "fmt")

    # Bob formats a message; alice sees bold, italic, code, a link.
    await send(bob, "**release** is *ready*: `make test`, see https://roost.example/notes.")
    line = alice.locator("#messages li.msg[data-sender=bob]").last
    await line.locator(".body strong").wait_for()
    assert await body_trees(alice, "#messages li.msg[data-sender=bob] .body") == [
        [
            [
                "p",
                ["strong", "release"],
                " is ",
                ["em", "ready"],
                ": ",
                ["code", "make test"],
                ", see ",
                [
                    "a",
                    {
                        "href": "https://roost.example/notes",
                        "title": "https://roost.example/notes",
                        "rel": "noopener noreferrer",
                        "target": "_blank",
                    },
                    "https://roost.example/notes",
                ],
                ".",
            ]
        ]
    ]

    # Injection attempts: each is text or a safe link on both pages.
    for text in INJECTIONS:
        await send(bob, text)
    await alice.wait_for_function(
        "n => document.querySelectorAll('#messages li.msg[data-sender=bob]').length === n", arg=1 + len(INJECTIONS)
    )
    await bob.wait_for_function("() => document.querySelectorAll('#pending li').length === 0")
    for page in (alice, bob):
        await assert_safe_dom(page)
        links = await page.eval_on_selector_all(
            "#messages li.msg[data-sender=bob] .body a", "els => els.map(e => [e.getAttribute('href'), e.textContent])"
        )
        assert [tuple(link) for link in links[1:]] == EXPECTED_LINKS
        bodies = await page.eval_on_selector_all(
            "#messages li.msg[data-sender=bob] .body", "els => els.map(e => e.textContent)"
        )
        assert "[click me](javascript:alert(1))" in bodies  # a refused link stays as its text
        assert "<script>alert(5)</script>" + XSS in bodies

    # Alice edits her own message into an attempt: bob sees text and a safe link.
    await send(alice, "draft")
    await wait_shown(bob, ["draft"])
    mine = alice.locator("#messages li.msg[data-sender=alice]").last
    await mine.locator("button.edit").click()
    edited = "[ok](https://roost.example/ok) [no](javascript:alert(9)) " + XSS
    await alice.fill("#messages .editor", edited)
    await alice.press("#messages .editor", "Enter")
    edited_line = bob.locator("#messages li.msg[data-edited=true]")
    await edited_line.wait_for()
    assert await edited_line.locator(".body").text_content() == "ok [no](javascript:alert(9)) " + XSS
    assert await edited_line.locator(".body a").get_attribute("href") == "https://roost.example/ok"
    await assert_safe_dom(bob)

    # Replies, threads and mentions carry the same attempts: quoted, threaded and highlighted, all as text.
    script = bob.locator("#messages li.msg[data-sender=bob]", has=bob.locator(".body", has_text="<script>alert(5)"))
    await script.locator("button.reply").click()
    await send(bob, "@alice quoting " + XSS)
    quoting = alice.locator("#messages li.msg", has=alice.locator(".body", has_text="quoting"))
    await quoting.wait_for()
    assert await quoting.locator(".quote-text").text_content() == "<script>alert(5)</script>" + XSS
    assert await quoting.locator(".body .mention.me").text_content() == "@alice"
    await script.locator("button.open-thread").click()
    await bob.fill("#threadBody", INJECTIONS[0] + " @alice " + XSS)
    await bob.press("#threadBody", "Enter")
    await alice.locator("#messages .thread-summary").click()
    threaded = alice.locator("#threadMessages li.msg", has=alice.locator(".body", has_text="click me"))
    await threaded.wait_for()
    assert await threaded.locator(".body").text_content() == INJECTIONS[0] + " @alice " + XSS
    for page in (alice, bob):
        await assert_safe_dom(page)
    await alice.click("#closeThread")
    await bob.click("#closeThread")

    # A reaction whose "emoji" is markup (32 bytes allow it), over HTTP: a chip of text on both pages.
    target = int(await alice.locator("#messages li.msg[data-sender=bob]").first.get_attribute("data-seq") or 0)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {await token_of(bob)}"}) as http:
        url = f"{server.url}/api/rooms/fmt/messages/{target}/reactions"
        async with http.post(url, json={"emoji": XSS}) as resp:
            assert resp.status == 201, await resp.text()
    for page in (alice, bob):
        chip = page.locator("#messages .reaction", has_text=XSS)
        await chip.wait_for()
        assert await chip.text_content() == f"{XSS} 1"

    # The picker: the common emoji plus the ones used here (the markup one, as text); alice picks 🎉.
    first = alice.locator("#messages li.msg[data-sender=bob]").first
    await first.hover()
    await first.locator("button.react-more").click()
    picks = await first.locator(".picker .pick").evaluate_all("els => els.map(e => e.textContent)")
    assert picks[:3] == ["👍", "❤️", "😂"] and "🎉" in picks and picks[-1] == XSS
    await first.locator(".picker .pick[data-emoji='🎉']").click()
    assert await alice.locator(".picker").count() == 0
    for page in (alice, bob):
        await page.wait_for_function(
            """() => [...document.querySelectorAll('#messages .reaction')].some(e => e.textContent === '🎉 1')"""
        )
    # Bob picks 🎉 too through his picker, which shows it as his choice to take back afterwards.
    theirs = bob.locator("#messages li.msg[data-sender=bob]").first
    await theirs.locator("button.react-more").click()
    await theirs.locator(".picker .pick[data-emoji='🎉']").click()
    for page in (alice, bob):  # bob's line is drawn again when his reaction comes back: wait for that
        await page.wait_for_function(
            """() => [...document.querySelectorAll('#messages .reaction')].some(e => e.textContent === '🎉 2')"""
        )
    await theirs.locator("button.react-more").click()
    assert await theirs.locator(".picker .pick[data-emoji='🎉']").get_attribute("aria-pressed") == "true"
    await bob.keyboard.press("Escape")
    assert await bob.locator(".picker").count() == 0

    # No seq number is shown to users (they stay in data-seq for tools and tests).
    for page in (alice, bob):
        visible = await page.inner_text("#log")
        assert not re.search(r"#\d+", visible), visible
        statuses = await page.eval_on_selector_all("#messages .status", "els => els.map(e => e.textContent)")
        assert set(statuses) <= {"", "(edited)"}, statuses
        assert await page.locator("#messages li.msg[data-seq]").count() >= 1 + len(INJECTIONS)

    assert await alice.evaluate("typeof window.__pwned") == "undefined"
    assert watch.dialogs == [] and watch.errors == [], (watch.dialogs, watch.errors)


async def test_one_direct_message_counts_one_unread(server: ServerProcess, browser: Any) -> None:
    """[R-CLIENT-72] Unread counts count text messages of others, not membership events: a new direct
    conversation with one message (after both joins) shows 1, also after the user's own message from another
    device, a reaction, and a reload."""
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, DESKTOP)
    await sign_in(alice, server.url, "alice")
    await sign_in(bob, server.url, "bob")
    await bob.fill("#createForm input", "desk")
    await bob.click("#createForm button")
    await bob.wait_for_selector("#roomTitle:text('#desk')")

    await alice.fill("#dmForm input", "bob")
    await alice.click("#dmForm button")
    await alice.wait_for_selector("#roomTitle:text('@bob')")
    await send(alice, "one message")
    await wait_shown(alice, ["one message"])
    kinds = await alice.eval_on_selector_all("#messages li[data-seq]", "els => els.map(e => e.dataset.kind || 'text')")
    assert len(kinds) >= 2 and kinds.count("text") == 1, kinds  # membership events came before it

    await bob.click("#refreshRooms")
    badge = "() => document.querySelector(\"[data-room='dm:alice:bob'] .badge\")?.textContent"
    await bob.wait_for_function(f"() => ({badge})() === '1'")
    assert await bob.title() == "(1) Roost"
    # Bob's own message from another device (his token over HTTP) and a reaction are nothing to read: still 1.
    headers = {"Authorization": f"Bearer {await token_of(bob)}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        url = f"{server.url}/api/rooms/dm:alice:bob/messages"
        async with http.post(url, json={"cmid": "phone-1", "body": "sent from my phone"}) as resp:
            seq = (await resp.json())["message"]["seq"]
        async with http.post(f"{url}/{seq - 1}/reactions", json={"emoji": "👍"}) as resp:
            assert resp.status == 201
    await bob.wait_for_function(f"() => window.roostClient.cursor('dm:alice:bob')?.seq >= {seq + 1}")
    assert await bob.evaluate(f"({badge})()") == "1"
    await bob.reload()  # the page forgot what it saw: it reads the kinds again
    await bob.wait_for_selector("#conn[data-state=connected]")
    await bob.wait_for_function(f"() => ({badge})() === '1'")
    assert await bob.title() == "(1) Roost"
    await bob.click("[data-room='dm:alice:bob']")
    await wait_shown(bob, ["one message"])
    assert await bob.locator("[data-room='dm:alice:bob'] .badge").count() == 0
    assert watch.dialogs == [] and watch.errors == [], (watch.dialogs, watch.errors)

"""Web Push on the page: chromium against a real ``roost serve`` and a push service of our own (tests/integration/
pushsvc.py, which checks VAPID and decrypts like a browser vendor's service).

* "Notify this device when I'm away" on: the page subscribes with the server's VAPID key and registers the
  subscription, so the server's registry holds it for that user; after a reload the toggle still shows on; off: the
  page deletes it from the registry and unsubscribes the browser;
* with bob away, alice's mention and direct message are pushed by the server to bob's device; each decrypted
  payload, delivered to bob's real service worker as a push event, shows a notification; the same push again
  (at least once, R-PUSH-6) shows nothing.

What is not real here: ``PushManager.subscribe`` and ``getSubscription`` (a stand-in, ``FAKE_PUSH_MANAGER``, gives the
subscription of a device of our push service). Chromium's own would register with Google's push service (FCM), which
is not reachable from this machine and which no test may reach (only 127.0.0.0/8). So the hop from a push service
to the browser is played by the test: it decrypts what the server pushed (as the browser would) and hands it to the
service worker with the DevTools protocol's ``ServiceWorker.deliverPushMessage``, the event Chromium raises for a
real push. A click on a notification is not tested (headless Chromium shows none to click).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from roost.chaos.infra import wait_until

from ..integration.procs import ServerProcess
from ..integration.pushsvc import PushService, unb64
from .test_inbox_web import _as
from .test_web import DESKTOP, Page, T, Watch, created, open_page, send, sign_in, token_of

FAST = {
    "push_allow_http": "true",  # our push service is http on 127.0.0.1
    "presence_interval_s": "0.2",
    "consumer_scan_s": "0.3",
    "consumer_lease_s": "2",
    "consumer_backoff_s": "0.05",
    "consumer_max_backoff_s": "0.2",
}

FAKE_PUSH_MANAGER = """
((device) => {
  // In place of the browser's registration with its vendor's push service (see the module's docstring): the
  // subscription is our push service's device; what the page asked for is kept for the test to read.
  const KEY = "test:push-subscription";
  const made = (record) => record && {
    endpoint: record.json.endpoint,
    expirationTime: null,
    options: { userVisibleOnly: record.userVisibleOnly, applicationServerKey: new Uint8Array(record.key).buffer },
    toJSON: () => record.json,
    unsubscribe: async () => {
      localStorage.removeItem(KEY);
      localStorage.setItem("test:unsubscribed", "yes");
      return true;
    },
  };
  PushManager.prototype.subscribe = async function (options) {
    const key = options.applicationServerKey;
    const bytes = key instanceof ArrayBuffer
      ? new Uint8Array(key) : new Uint8Array(key.buffer, key.byteOffset, key.byteLength);
    const record = { json: device, key: Array.from(bytes), userVisibleOnly: options.userVisibleOnly };
    localStorage.setItem(KEY, JSON.stringify(record));
    return made(record);
  };
  PushManager.prototype.getSubscription = async function () {
    return made(JSON.parse(localStorage.getItem(KEY) || "null"));
  };
})(%s);
"""

NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.getRegistration("/");
  return (await registration.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag }));
}"""

CLOSE_NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.getRegistration("/");
  for (const n of await registration.getNotifications()) n.close();
}"""


@pytest.fixture
async def pushsvc() -> AsyncIterator[PushService]:
    started = await PushService().start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def pushing_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    flags = [arg for name, value in FAST.items() for arg in ("--limit", f"{name}={value}")]
    proc = ServerProcess(tmp_path / "data", None, *flags)
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def notifications(page: Page) -> list[dict[str, str]]:
    shown: list[dict[str, str]] = await page.evaluate(NOTIFICATIONS)
    return shown


async def until_shown(page: Page, some: bool = True) -> None:
    """Until the page's service worker shows a notification (``some``), or none. (A promise in the page:
    Playwright's wait_for_function does not wait for one, so this is polled from here.)"""

    async def check() -> bool:
        return bool(await notifications(page)) == some

    polled: Callable[[], Awaitable[bool]] = check
    done: bool = await wait_until("a notification" if some else "no notification", polled, T / 1000, 0.1)
    assert done


async def devices(server: ServerProcess, token: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await _as(server, token, "GET", "/api/push/subscriptions"))["subscriptions"]
    return listed


async def test_the_toggle_registers_the_device_and_the_service_worker_shows_each_push_once(
    pushing_server: ServerProcess, pushsvc: PushService, browser: Any
) -> None:
    """[R-PUSH-2] [R-PUSH-3] [R-PUSH-6] The toggle registers this browser's subscription (made with the key of
    ``/api/push/vapid``) for the user and deletes it again; a push of the server reaches the service worker, which
    shows "alice mentioned you in plans" / "alice sent you a message" once per (room, seq)."""
    server = pushing_server
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    await created(alice, server.url, "alice", "plans")

    laptop = pushsvc.device("bobs-laptop")
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(T)
    await context.grant_permissions(["notifications"], origin=server.url)
    await context.add_init_script(script=FAKE_PUSH_MANAGER % json.dumps(laptop.subscription()))
    bob = await context.new_page()
    watch.attach(bob)
    await sign_in(bob, server.url, "bob")
    await bob.click("#refreshRooms")
    await bob.click("[data-join=plans]")
    await bob.wait_for_selector("#messages li.event[data-sender=bob]")
    token = await token_of(bob)
    assert await devices(server, token) == []

    # On: subscribed with the server's VAPID key, registered for bob.
    await bob.check("#pushEnabled")
    saved = f"roost-page:{server.url.removeprefix('http://')}:bob:push"
    await bob.wait_for_function("key => localStorage.getItem(key) !== null", arg=saved)
    listed = await devices(server, token)
    assert [d["endpoint"] for d in listed] == [laptop.endpoint]
    asked = await bob.evaluate("JSON.parse(localStorage.getItem('test:push-subscription'))")
    vapid = (await _as(server, token, "GET", "/api/push/vapid"))["public_key"]
    assert asked["userVisibleOnly"] is True
    assert bytes(asked["key"]) == unb64(vapid)
    assert await bob.is_enabled("#pushEnabled") and await bob.is_hidden("#pushHint")

    # Bob goes away (a page of the site without the chat: no connection); alice mentions him and writes to him.
    await bob.goto(server.url + "/api/push/vapid")
    mention = await sent_seq(alice, "@bob dinner at 8?")
    await alice.fill("#dmForm input", "bob")
    await alice.click("#dmForm button")
    await alice.wait_for_function("() => document.getElementById('roomTitle').textContent === '@bob'")
    dm = await sent_seq(alice, "just between us")
    room = "dm:alice:bob"
    await wait_until(
        "both pushes", lambda: {("plans", mention), (room, dm)} <= pushsvc.events("bobs-laptop"), within_s=30
    )
    payloads = {g.event: g.payload for g in pushsvc.delivered("bobs-laptop")}

    # The push service's part, played by the test: each decrypted payload to bob's service worker.
    cdp = await context.new_cdp_session(bob)
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def registrations(event: dict[str, Any]) -> None:
        for r in event["registrations"]:
            if r["scopeURL"] == server.url + "/" and not r["isDeleted"] and not found.done():
                found.set_result(r["registrationId"])

    cdp.on("ServiceWorker.workerRegistrationUpdated", registrations)
    await cdp.send("ServiceWorker.enable")
    worker = await asyncio.wait_for(found, T / 1000)

    async def deliver(event: tuple[str, int]) -> None:
        data = json.dumps(payloads[event])
        await cdp.send(
            "ServiceWorker.deliverPushMessage", {"origin": server.url + "/", "registrationId": worker, "data": data}
        )

    await deliver(("plans", mention))
    await until_shown(bob)
    assert await notifications(bob) == [
        {"title": "alice mentioned you in plans", "body": "", "tag": f"plans:{mention}"}
    ]
    await bob.evaluate(CLOSE_NOTIFICATIONS)
    await until_shown(bob, some=False)
    # The same push again (a server that sent it twice) shows nothing; the next one shows (the worker checks them in
    # the order they came, so the first was dropped by the time the second shows).
    await deliver(("plans", mention))
    await deliver((room, dm))
    await until_shown(bob)
    assert await notifications(bob) == [{"title": "alice sent you a message", "body": "", "tag": f"{room}:{dm}"}]

    # Back on the page the toggle shows on; off deletes the device and unsubscribes the browser.
    await bob.goto(server.url + "/")
    await bob.wait_for_selector("#conn[data-state=connected]")
    await bob.wait_for_function("() => document.getElementById('pushEnabled').checked")
    await bob.uncheck("#pushEnabled")
    await bob.wait_for_function("key => localStorage.getItem(key) === null", arg=saved)
    assert await devices(server, token) == []
    assert await bob.evaluate("localStorage.getItem('test:unsubscribed')") == "yes"
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)


async def sent_seq(page: Page, text: str) -> int:
    """Send ``text`` in the open room and return its seq once stored."""
    await send(page, text)
    line = page.locator("#messages li.msg[data-state=sent]", has=page.locator(".body", has_text=text))
    await line.wait_for()
    return int(await line.get_attribute("data-seq") or 0)

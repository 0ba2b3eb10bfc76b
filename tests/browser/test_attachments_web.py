"""Attachments in the chat page: two browsers against a real ``roost serve``. Alice attaches an image and a text
file whose name is HTML, and sends them; bob sees the image as a thumbnail, opens it full size, and sees the file's
name as text with a download link; a third user who is not in the room cannot fetch bob's links."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from ..integration.procs import ServerProcess
from .test_web import DESKTOP, PHONE, XSS, Watch, created, joined, open_page, screenshot, send


async def test_an_image_and_a_file_are_sent_seen_and_opened_by_another_browser(
    server: ServerProcess, browser: Any, tmp_path: Path
) -> None:
    """[R-ATT-5] [R-ATT-6] [R-CLIENT-76] Upload with the attach button, send with a text, the thumbnail and the
    full image shown to the other member through signed links, an HTML file name shown as text, no dialog, no
    error, no CSP violation."""
    image = io.BytesIO()
    Image.new("RGB", (800, 600), (10, 140, 90)).save(image, "PNG")
    picture = tmp_path / "garden.png"
    picture.write_bytes(image.getvalue())
    notes = tmp_path / "notes.txt"
    notes.write_text("<script>alert(2)</script>")
    watch = Watch()
    alice = await open_page(browser, watch, DESKTOP)
    bob = await open_page(browser, watch, PHONE)
    await created(alice, server.url, "alice", "lobby")
    await joined(bob, server.url, "bob", "lobby")

    await alice.set_input_files(
        "#attachInput",
        files=[
            {"name": "garden.png", "mimeType": "image/png", "buffer": picture.read_bytes()},
            {"name": XSS + ".txt", "mimeType": "text/html", "buffer": notes.read_bytes()},
        ],
    )
    await alice.wait_for_function(
        "() => document.querySelectorAll('#pendingFiles li.pending-file[data-id]').length === 2"
    )
    assert await alice.locator("#pendingFiles .file-name").all_text_contents() == [
        "garden.png",
        "_img src=x onerror=alert(1)_.txt",
    ]
    await send(alice, "the garden")
    await alice.wait_for_selector("#pendingFiles", state="hidden")

    line = bob.locator("#messages li.msg", has=bob.locator(".body", has_text="the garden"))
    thumb = line.locator(".attachment.image img")
    await thumb.wait_for()
    await bob.wait_for_function(
        "() => { const i = document.querySelector('#messages .attachment.image img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    size = await thumb.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert size == [320, 240], size  # the thumbnail, not the 800 x 600 picture
    assert await thumb.get_attribute("alt") == "garden.png"
    # A click opens the full image in a new tab, through bob's signed link.
    async with bob.context.expect_page() as opened:
        await line.locator("a.open-image").click()
    full = await opened.value
    await full.wait_for_load_state()
    assert "/api/rooms/lobby/attachments/" in full.url and "user=bob" in full.url
    shown = await full.evaluate(
        "() => { const i = document.querySelector('img'); return i && [i.naturalWidth, i.naturalHeight]; }"
    )
    assert shown == [800, 600], shown
    # The text file: its HTML name is text, a download link with its size; nothing was injected anywhere.
    download = line.locator(".attachment.file a.download")
    assert await download.text_content() == "_img src=x onerror=alert(1)_.txt"
    assert await line.locator(".attachment.file img, .body img").count() == 0
    await bob.wait_for_function("() => document.querySelector('#messages .attachment.file a.download[href]')")
    href = await download.get_attribute("href")
    assert href is not None and "user=bob" in href
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + href) as got:
            assert got.status == 200 and got.headers["Content-Disposition"].startswith("attachment;")
            assert await got.read() == b"<script>alert(2)</script>"
        async with http.get(server.url + href.replace("user=bob", "user=mallory")) as forged:
            assert forged.status == 401
    await alice.wait_for_function(
        "() => { const i = document.querySelector('#messages .attachment.image img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    await screenshot(alice, tmp_path, "screenshot-attachments.png")  # ROOST_UPDATE_SCREENSHOTS=1: docs/
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)

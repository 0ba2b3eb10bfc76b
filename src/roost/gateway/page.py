"""The web client's files: ``/`` and the modules it loads, served from the ``roost.web`` package.

Declared with ``@route`` like the API (routes.py), so the OpenAPI document lists every path the server
answers; their bodies are the files, not JSON.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Final

from aiohttp import web

from .headers import CONTENT_SECURITY_POLICY
from .hosts import host_name
from .routes import PUBLIC, route

__all__ = ["WEB_FILES", "Page"]

WEB_FILES: Final = {
    "roost.js": "text/javascript",
    "protocol.js": "text/javascript",
    "encoding.js": "text/javascript",
    "sync.js": "text/javascript",
    "relations.js": "text/javascript",
    "backoff.js": "text/javascript",
    "markdown.js": "text/javascript",
    "search.js": "text/javascript",
    "push.js": "text/javascript",
    "roomsettings.js": "text/javascript",
    "attach.js": "text/javascript",
    "dom.js": "text/javascript",
    "app.js": "text/javascript",
    "roost.css": "text/css",
    "sw.js": "text/javascript",
}
"""The page's files besides index.html; other sites may import /roost.js and the modules it imports (hence the
CORS header)."""


def _vendored(folder: str) -> dict[str, str]:
    """The modules of a vendored npm package (``vendor/<folder>``, scripts/vendor_web.py), by its manifest."""
    manifest = json.loads(resources.files("roost.web").joinpath("vendor", folder, "MANIFEST.json").read_text())
    return {f"vendor/{folder}/{path}": "text/javascript" for path in manifest["files"] if path.endswith(".mjs")}


WEB_FILES.update(_vendored("msgpack"))  # roost.js imports it on the first MessagePack connection only


_WS_META: Final = '<meta name="roost-websocket" content="/ws">'
"""Where the page opens its WebSocket (app.js): ``/ws`` on the page's own host and port by default."""


class Page:
    def __init__(self, ws_port: int | None = None) -> None:
        self.ws_port = ws_port
        """``--ws-transport picows``: the WebSocket is on this port of the same host, not the page's."""

    @route("GET", "/", "a small web chat page", auth=PUBLIC, media="text/html")
    async def index(self, request: web.Request) -> web.Response:
        text = resources.files("roost.web").joinpath("index.html").read_text()
        if self.ws_port is None:
            return web.Response(text=text, content_type="text/html")
        # The host the browser used (checked by HostCheck before any route), on the WebSocket port; app.js
        # sets ws: or wss: after the page's own scheme. The policy lets the page connect there.
        name = request.host.strip()
        name = name[: name.find("]") + 1] if name.startswith("[") else host_name(name)
        where = f"//{name}:{self.ws_port}"
        text = text.replace(_WS_META, f'<meta name="roost-websocket" content="{html.escape(where)}/ws">')
        policy = CONTENT_SECURITY_POLICY.replace("connect-src 'self'", f"connect-src 'self' ws:{where} wss:{where}")
        headers = {"Content-Security-Policy": policy}
        return web.Response(text=text, content_type="text/html", headers=headers)

    async def web_file(self, request: web.Request) -> web.Response:
        name = request.path.removeprefix("/")
        text = resources.files("roost.web").joinpath(*name.split("/")).read_text()
        headers = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
        return web.Response(text=text, content_type=WEB_FILES[name], headers=headers)


for _name, _media in WEB_FILES.items():
    route("GET", f"/{_name}", f"the web client's {_name}", auth=PUBLIC, media=_media)(Page.web_file)

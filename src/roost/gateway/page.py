"""The web client's files: ``/`` and the modules it loads, served from the ``roost.web`` package.

Declared with ``@route`` like the API (routes.py), so the OpenAPI document lists every path the server
answers; their bodies are the files, not JSON.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

from .routes import PUBLIC, route

__all__ = ["WEB_FILES", "Page"]

WEB_FILES: Final = {
    "roost.js": "text/javascript",
    "protocol.js": "text/javascript",
    "sync.js": "text/javascript",
    "relations.js": "text/javascript",
    "backoff.js": "text/javascript",
    "markdown.js": "text/javascript",
    "app.js": "text/javascript",
    "roost.css": "text/css",
    "sw.js": "text/javascript",
}
"""The page's files besides index.html; other sites may import /roost.js and the modules it imports (hence the
CORS header)."""


class Page:
    @route("GET", "/", "a small web chat page", auth=PUBLIC, media="text/html")
    async def index(self, request: web.Request) -> web.Response:
        text = resources.files("roost.web").joinpath("index.html").read_text()
        return web.Response(text=text, content_type="text/html")

    async def web_file(self, request: web.Request) -> web.Response:
        name = request.path.removeprefix("/")
        text = resources.files("roost.web").joinpath(name).read_text()
        headers = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
        return web.Response(text=text, content_type=WEB_FILES[name], headers=headers)


for _name, _media in WEB_FILES.items():
    route("GET", f"/{_name}", f"the web client's {_name}", auth=PUBLIC, media=_media)(Page.web_file)

"""The ``Host`` header check, against DNS rebinding.

A page on ``evil.example`` whose name the attacker re-points at 127.0.0.1 is, to the browser, same-origin with
``http://evil.example:8080``: it can read what a local Roost answers (the development login hands out a token
for any name) and open WebSockets whose ``Origin`` matches the ``Host``. Its requests carry
``Host: evil.example:8080``, though, which is what is checked here, before any route and before the WebSocket
upgrade. Accepted (docs/security.md, R-SEC-62):

* an IP address (a rebinding page never has one as its host) and ``localhost`` / ``*.localhost``;
* the names of ``--allowed-host`` (repeatable, ``ROOST_ALLOWED_HOSTS``; ``*`` turns the check off);
* with no ``--allowed-host`` on a server with keys (not development mode), any name: its tokens are not ambient
  (no cookie), so a rebinding page has none to ride on.

A request without ``Host`` (HTTP/1.0) is not from a browser and passes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..protocol import frames
from ..protocol.codes import Code

__all__ = ["HostCheck", "host_name"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_name(header: str) -> str:
    """The name or address of a ``Host`` header: no port, no brackets, lower case, no trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, colon, port = header.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        header = name
    return header.rstrip(".")


def _address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    def __init__(self, allowed: tuple[str, ...], dev_mode: bool) -> None:
        self.allowed = frozenset(host_name(h) for h in allowed)
        self.any = "*" in self.allowed or (not self.allowed and not dev_mode)

    def allows(self, header: str | None) -> bool:
        if self.any or header is None:
            return True
        name = host_name(header)
        return name in self.allowed or name == "localhost" or name.endswith(".localhost") or _address(name)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host")
        if self.allows(header):
            return await handler(request)
        reason = f"host {header!r} is not served here: list it with --allowed-host (ROOST_ALLOWED_HOSTS)"
        body = frames.encode(frames.Error(code=int(Code.BAD_FRAME), reason=reason))
        return web.Response(status=400, body=body, content_type="application/json")

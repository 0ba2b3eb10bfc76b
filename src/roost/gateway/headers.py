"""Security headers on every HTTP response.

The page's Content-Security-Policy is sent as a header, not only a ``<meta>`` tag, because the part that
stops other sites from framing the signed-in page (``frame-ancestors``, clickjacking) is ignored in a
``<meta>`` tag. ``X-Frame-Options`` says the same to browsers that predate ``frame-ancestors``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "add_security_headers"]

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def add_security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer, pages, scripts, API and errors alike, so none is forgotten."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)

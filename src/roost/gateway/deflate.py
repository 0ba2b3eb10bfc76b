"""permessage-deflate's server window (RFC 7692): the offer a client made, narrowed to the server's window.

aiohttp compresses with the window the client's offer names (``server_max_window_bits``, 15 bits when it names
none) and has no setting of its own for it. A server may answer with a smaller window than the client offered,
or name one the client did not ask for (RFC 7692 section 7.1.2.1), so the upgrade is negotiated on the offer with
``server_max_window_bits`` at most ``ws_deflate_window_bits``; aiohttp then answers with it and compresses with
that window: 2**bits bytes of history; a busy compressed connection holds about 240 KB more than a plain one at 15
bits, 135 KB at 12 (docs/benchmarks.md, "Wire options: memory per connection").
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_WINDOW_BITS", "MIN_WINDOW_BITS", "narrow"]

MIN_WINDOW_BITS: Final = 9
"""zlib's smallest raw deflate window (8 is refused by aiohttp and by zlib itself for raw streams)."""
MAX_WINDOW_BITS: Final = 15


def narrow(offer: str, bits: int) -> str:
    """``offer`` (a ``Sec-WebSocket-Extensions`` request header) with every permessage-deflate offer asking for a
    server window of at most ``bits``; other extensions and parameters unchanged."""
    out = []
    for extension in offer.split(","):
        name, *params = (part.strip() for part in extension.split(";"))
        if name.lower() != "permessage-deflate":
            out.append(extension.strip())
            continue
        kept, asked = [], MAX_WINDOW_BITS
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "server_max_window_bits":
                value = value.strip().strip('"')
                asked = int(value) if value.isdigit() else MAX_WINDOW_BITS
                continue
            kept.append(param)
        window = max(MIN_WINDOW_BITS, min(asked, bits))
        out.append("; ".join([name, *kept, f"server_max_window_bits={window}"]))
    return ", ".join(out)

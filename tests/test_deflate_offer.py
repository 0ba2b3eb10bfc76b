"""gateway/deflate.py: a client's permessage-deflate offer narrowed to the server's window (sans I/O)."""

from __future__ import annotations

import pytest

from roost.gateway.deflate import narrow


@pytest.mark.parametrize(
    ("offer", "bits", "narrowed"),
    [
        ("permessage-deflate", 12, "permessage-deflate; server_max_window_bits=12"),
        (
            "permessage-deflate; client_max_window_bits",
            10,
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10",
        ),
        ("permessage-deflate; server_max_window_bits=9", 12, "permessage-deflate; server_max_window_bits=9"),
        ('permessage-deflate; server_max_window_bits="14"', 12, "permessage-deflate; server_max_window_bits=12"),
        (
            "x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover",
            11,
            "x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
        ),
        (
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            12,
            "permessage-deflate; server_max_window_bits=10, permessage-deflate; server_max_window_bits=12",
        ),
        ("permessage-deflate; server_max_window_bits=4", 12, "permessage-deflate; server_max_window_bits=9"),
    ],
)
def test_every_deflate_offer_asks_for_at_most_the_servers_window(offer: str, bits: int, narrowed: str) -> None:
    """[R-WIRE-12] The server's window is at most ``ws_deflate_window_bits`` and at most what the client offered
    (never under zlib's 9 bits); other parameters and extensions are kept as offered."""
    assert narrow(offer, bits) == narrowed

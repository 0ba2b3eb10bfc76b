"""Options in an engine URL's query string: an unknown one is a mistake, said in one line.

``redis://host/0?prefx=a`` used to start a node that silently ignored the misspelt prefix (or handed
it to the driver, which failed on every command). Each engine names the options it takes.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from ..protocol.errors import UsageError

__all__ = ["url_options"]


def url_options(url: str, engine: str, ours: Iterable[str], driver: Iterable[str] = ()) -> dict[str, str]:
    """Every ``key=value`` of ``url``'s query (the last value of a repeated key), or ``UsageError``."""
    options = {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}
    known = set(ours) | set(driver)
    unknown = sorted(set(options) - known)
    if unknown:
        said = ", ".join(sorted(ours))
        extra = f"; passed to the driver: {', '.join(sorted(driver))}" if driver else ""
        raise UsageError(f"unknown {engine} URL option {', '.join(map(repr, unknown))} (Roost's: {said}{extra})")
    return options

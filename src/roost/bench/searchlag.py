"""The search indexer's lag during a bench step, read from a Roost server's ``/metrics``.

Each step of a Roost target is bracketed by two scrapes: the step's share of ``roost_search_index_delay_seconds``
(from a message's ``ts`` to its commit into the search index) is the difference of the histograms, and its p50
and p99 are the upper bounds of the buckets they fall in; ``roost_search_lag_events`` is read at the step's end.
Servers without the metrics (search off, an older checkout) give nothing.
"""

from __future__ import annotations

import re
from typing import Any, Final

import aiohttp

__all__ = ["Snapshot", "scrape", "step_figures"]

_LABELS: Final = r'(?:\{(?:[a-z_]+="[^"]*",?)*\})?'
"""A worker's series carry ``worker="<i>"`` (roost serve --workers N)."""
_BUCKET: Final = re.compile(
    r'^roost_search_index_delay_seconds_bucket\{(?:[a-z_]+="[^"]*",)*le="([^"]+)"(?:,[a-z_]+="[^"]*")*\} (\S+)$', re.M
)
_LAG: Final = re.compile(rf"^roost_search_lag_events{_LABELS} (\S+)$", re.M)
_ERRORS: Final = re.compile(rf"^roost_search_index_errors_total{_LABELS} (\S+)$", re.M)

Snapshot = dict[str, Any]


async def scrape(urls: list[str]) -> Snapshot | None:
    """The search metrics summed over the servers (``http://host:port``), or None when they have none."""
    buckets: dict[float, float] = {}
    lag = errors = 0.0
    found = False
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for url in urls:
                async with http.get(f"{url}/metrics") as r:
                    text = await r.text()
                for le, count in _BUCKET.findall(text):
                    found = True
                    bound = float("inf") if le == "+Inf" else float(le)
                    buckets[bound] = buckets.get(bound, 0.0) + float(count)
                lag += sum(float(v) for v in _LAG.findall(text))
                errors += sum(float(v) for v in _ERRORS.findall(text))
    except (aiohttp.ClientError, TimeoutError):
        return None
    return {"buckets": buckets, "lag": lag, "errors": errors} if found else None


def _quantile(delta: dict[float, float], q: float) -> float | None:
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for bound in sorted(delta):
        if delta[bound] >= q * total:
            return bound
    return None


def step_figures(before: Snapshot | None, after: Snapshot | None) -> dict[str, Any] | None:
    """``{"indexed", "delay_p50_s", "delay_p99_s", "lag_events", "errors"}`` of one step (bucket bounds)."""
    if before is None or after is None:
        return None
    delta = {b: after["buckets"].get(b, 0.0) - before["buckets"].get(b, 0.0) for b in after["buckets"]}
    return {
        "indexed": int(delta.get(float("inf"), 0.0)),
        "delay_p50_s": _quantile(delta, 0.5),
        "delay_p99_s": _quantile(delta, 0.99),
        "lag_events": int(after["lag"]),
        "errors": int(after["errors"] - before["errors"]),
    }

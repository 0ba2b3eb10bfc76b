"""``roost serve --workers N``: one process per core behind one listening port, each process a full Roost node.

A Roost node is one event loop, so it uses one core. Several ``roost serve`` processes over a shared engine already
behave as one server (docs/deploy.md); ``--workers N`` runs N of them behind the same port(s) without a load
balancer in front:

* the parent (supervisor.py) binds the listening socket(s) once (sockets.py: why an inherited socket rather than
  ``SO_REUSEPORT``), prints the real port once, and starts N workers;
* each worker (child.py) is an ordinary node on the socket it inherited, with its own node id, its own bus
  subscriptions, presence and leases, exactly as a separate ``roost serve`` would be;
* the parent forwards SIGTERM/SIGINT (each worker drains as a single node does), restarts a worker that died with a
  backoff, and gives up (exit status 1) when one keeps dying; a worker whose parent died stops.

Only engines several nodes can share qualify (``refusal``): the embedded SQLite store has one writer process and
its in-process bus cannot reach another process, so a message sent through one worker would never reach a client
of another.
"""

from __future__ import annotations

from ..config import Settings

__all__ = ["refusal"]


def refusal(settings: Settings) -> str | None:
    """Why these settings cannot run as several workers (one line for ``roost: error:``), or None."""
    if settings.workers <= 1:
        return None
    store = settings.store or ""
    if store in ("", "sqlite") or store.startswith("sqlite:"):
        return (
            f"--workers {settings.workers} needs a store several nodes can share (redis://, nats://, postgresql:// or"
            " kafka:// with a shared bus): the embedded SQLite store has a single writer process and its in-process"
            " bus cannot reach another process; run one process, or see docs/deploy.md"
        )
    if settings.bus in ("local",) or (not store.startswith(("redis", "nats")) and settings.bus in (None, "")):
        return (
            f"--workers {settings.workers} needs a shared bus (--bus redis:// or nats://): the in-process bus cannot"
            " reach another process"
        )
    return None

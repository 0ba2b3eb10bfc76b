"""The embedded bus: in-process, so it is never shared and has nothing to clean."""

from __future__ import annotations

from .engine import Engine

ENGINES = (Engine("local", bus_url=lambda ns: None, shared=False),)

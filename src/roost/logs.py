"""Log lines an operator can use: one event a line, as JSON (``--log-format json``) or readable text.

Every line carries the time, level, logger, the node's id and the message; JSON lines add the
exception (if any) as one string, so a log shipper never has to stitch a traceback together.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Final

__all__ = ["NODE_ID", "Throttled", "configure"]

NODE_ID: Final = secrets.token_hex(4)
"""This process's id in every log line (and in ``/readyz``)."""

_TEXT: Final = "%(asctime)s %(levelname)s %(name)s [%(node)s] %(message)s"


class _NodeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.node = NODE_ID
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "node": NODE_ID,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, fmt: str) -> None:
    """Send every ``roost`` (and library) log record to stderr, one line each."""
    handler = logging.StreamHandler()
    handler.addFilter(_NodeFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


class Throttled:
    """One log line per key per ``window_s``; what was held back is counted in the next line.

    A flood of the same failure (a full disk answering every send with 4503) becomes a line every few
    seconds with a count, not thousands of lines."""

    def __init__(self, logger: logging.Logger, window_s: float = 10.0) -> None:
        self.logger = logger
        self.window_s = window_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" (and {held} more like it in the last {now - last:.0f} s)" if held and last is not None else ""
        self.logger.warning(message + suffix, *args)

"""A flood of one failure is a line every window with a count; JSON lines are one object each."""

from __future__ import annotations

import json
import logging
import time

import pytest

from roost.logs import NODE_ID, JsonFormatter, Throttled


def test_a_flood_becomes_one_line_per_window_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    throttled = Throttled(logging.getLogger("roost.test.flood"), window_s=0.2)
    with caplog.at_level(logging.WARNING, logger="roost.test.flood"):
        for i in range(1000):
            throttled.warning("4503", "answered 4503: disk full (%d)", i)
        throttled.warning("4500", "answered 4500: a bug")  # another key is not held back
        time.sleep(0.25)  # the subject: the window ends, and the next line says how many it held back
        throttled.warning("4503", "answered 4503: disk full (%d)", 1000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "answered 4503: disk full (0)"
    assert lines[1] == "answered 4500: a bug"
    assert lines[2].startswith("answered 4503: disk full (1000) (and 999 more like it in the last")
    assert len(lines) == 3


def test_json_lines_carry_the_node_and_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("roost.x", logging.ERROR, __file__, 1, "failed %s", ("here",), exc_info=True)
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and line["logger"] == "roost.x" and line["msg"] == "failed here"
    assert line["node"] == NODE_ID and "ValueError: boom" in line["exc"]
    assert "\n" not in JsonFormatter().format(record)

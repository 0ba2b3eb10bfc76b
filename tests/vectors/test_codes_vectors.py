"""tests/vectors/codes.json against both clients' code tables: roost.protocol.codes.Code and the browser
client's src/roost/web/protocol.js (under Node). Same names, same numbers, same retry rule, nothing
missing on either side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from roost.protocol.codes import Code

from .js import run_js

CODES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "codes.json").read_text(encoding="utf-8"))["codes"]


def test_python_codes_are_the_vectors() -> None:
    assert [{"name": c.name, "code": int(c), "retryable": c.retryable} for c in Code] == CODES


def test_js_codes_are_the_vectors() -> None:
    assert run_js({"codes": True})["codes"] == CODES


def test_the_retry_rule_is_the_documented_one() -> None:
    """Every 45xx and 4429 may be retried; no other 44xx (docs/protocol.md section 12)."""
    for row in CODES:
        assert row["retryable"] == (row["code"] >= 4500 or row["code"] == 4429), row["name"]

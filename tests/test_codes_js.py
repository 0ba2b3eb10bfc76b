"""roost.js's code table is roost.protocol.codes.Code: same names, same numbers, nothing missing."""

from __future__ import annotations

import re
from pathlib import Path

from roost.protocol.codes import Code

ROOST_JS = Path(__file__).resolve().parents[1] / "src" / "roost" / "web" / "roost.js"


def test_roost_js_has_every_code() -> None:
    source = ROOST_JS.read_text(encoding="utf-8")
    table = re.search(r"export const Code = Object\.freeze\(\{(.*?)\}\);", source, re.S)
    assert table is not None, "roost.js: no `export const Code = Object.freeze({...});`"
    js = {name: int(value) for name, value in re.findall(r"(\w+): (\d+),", table.group(1))}
    assert js == {code.name: int(code) for code in Code}

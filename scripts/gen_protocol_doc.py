"""Regenerate docs/protocol.json and the generated tables of docs/protocol.md from roost.protocol.spec.

    .venv/bin/python scripts/gen_protocol_doc.py          # rewrite both files
    .venv/bin/python scripts/gen_protocol_doc.py --check  # exit 1, naming the stale file, if either differs

tests/test_protocol_doc.py fails when a regeneration would change either file, so run this after changing
a frame, a code, an error's retry rule or a limit, and commit what it wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path

from roost.protocol import spec

ROOT = Path(__file__).resolve().parents[1]
JSON = ROOT / "docs" / "protocol.json"
DOC = ROOT / "docs" / "protocol.md"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    definition = spec.build()
    wanted = {
        JSON: spec.render(definition),
        DOC: spec.splice(DOC.read_text(encoding="utf-8"), spec.doc_regions(definition)),
    }
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run scripts/gen_protocol_doc.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

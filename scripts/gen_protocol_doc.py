"""Regenerate docs/protocol.json and the generated tables of docs/protocol.md from roost.protocol.spec, the
AsyncAPI document docs/asyncapi.json (roost.protocol.asyncapi) and the OpenAPI document docs/openapi.json
(roost.gateway.openapi).

    .venv/bin/python scripts/gen_protocol_doc.py          # rewrite the stale files
    .venv/bin/python scripts/gen_protocol_doc.py --check  # exit 1, naming each stale file

tests/test_protocol_doc.py and tests/test_api_documents.py fail when a regeneration would change a file, so run
this after changing a frame, a code, an error's retry rule, a limit or an HTTP route, and commit what it wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path

from roost.gateway import openapi
from roost.protocol import asyncapi, spec

ROOT = Path(__file__).resolve().parents[1]
JSON = ROOT / "docs" / "protocol.json"
DOC = ROOT / "docs" / "protocol.md"
ASYNCAPI = ROOT / "docs" / "asyncapi.json"
OPENAPI = ROOT / "docs" / "openapi.json"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    definition = spec.build()
    wanted = {
        JSON: spec.render(definition),
        DOC: spec.splice(DOC.read_text(encoding="utf-8"), spec.doc_regions(definition)),
        ASYNCAPI: asyncapi.render(asyncapi.build()),
        OPENAPI: openapi.render(openapi.build()),
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

"""Regenerate docs/protocol.json and the generated tables of docs/protocol.md from roost.protocol.spec, the
AsyncAPI document docs/asyncapi.json (roost.protocol.asyncapi), the OpenAPI document docs/openapi.json
(roost.gateway.openapi) and the configuration reference in docs/operations.md (roost.config_sources.reference,
``roost config reference``).

    .venv/bin/python scripts/gen_protocol_doc.py          # rewrite the stale files
    .venv/bin/python scripts/gen_protocol_doc.py --check  # exit 1, naming each stale file

tests/test_protocol_doc.py and tests/test_api_documents.py fail when a regeneration would change a file, so run
this after changing a frame, a code, an error's retry rule, a limit, a setting or an HTTP route, and commit what it
wrote (tests/test_config.py checks the configuration reference).
"""

from __future__ import annotations

import sys
from pathlib import Path

from roost.config_sources import reference
from roost.gateway import openapi
from roost.protocol import asyncapi, spec

ROOT = Path(__file__).resolve().parents[1]
JSON = ROOT / "docs" / "protocol.json"
DOC = ROOT / "docs" / "protocol.md"
ASYNCAPI = ROOT / "docs" / "asyncapi.json"
OPENAPI = ROOT / "docs" / "openapi.json"
OPERATIONS = ROOT / "docs" / "operations.md"
_REFERENCE = ("<!-- config-reference:start -->\n", "\n<!-- config-reference:end -->")


def _with_reference(doc: str) -> str:
    """docs/operations.md with the text between its config-reference markers replaced by ``reference()``."""
    start, end = _REFERENCE
    head, _, rest = doc.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}{reference()}{end}{tail}"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    definition = spec.build()
    wanted = {
        JSON: spec.render(definition),
        DOC: spec.splice(DOC.read_text(encoding="utf-8"), spec.doc_regions(definition)),
        ASYNCAPI: asyncapi.render(asyncapi.build()),
        OPENAPI: openapi.render(openapi.build()),
        OPERATIONS: _with_reference(OPERATIONS.read_text(encoding="utf-8")),
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

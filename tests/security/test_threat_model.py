"""The threat model in docs/security.md: every line names rules, and the rules it names exist.

The rules themselves are checked by the tests that name them (tests/test_protocol_doc.py makes sure each
one is named); this file keeps the table honest, and checks the one rule it introduced (R-SEC-13).
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from roost.client import RequestFailed, connect
from roost.config import Settings
from roost.node import serve

from ..test_protocol_doc import _rules_in_docs

SECURITY = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def threat_model_rows() -> list[list[str]]:
    section = SECURITY.read_text(encoding="utf-8").split("## Threat model", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Who")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_every_line_of_the_threat_model_names_rules_the_docs_define() -> None:
    rows = threat_model_rows()
    assert len(rows) >= 15, "the threat model table was not found in docs/security.md"
    defined = _rules_in_docs()
    actors = set()
    for who, can, cannot, rules in rows:
        actors.add(who)
        named = re.findall(r"\((R-[A-Z]+-\d+)\)", rules)
        assert named, f"a threat-model line names no rule: {who} | {can} | {cannot}"
        assert can or cannot, f"an empty threat-model line for {who}"
        missing = [rule for rule in named if rule not in defined]
        assert not missing, f"the threat model names rules the docs do not define: {missing}"
    everyone = ("Anyone who reaches the port", "A signed-in user", "A room's owner or admin", "A server administrator")
    for actor in everyone:
        assert actor in actors, f"the threat model says nothing about: {actor}"


async def test_the_unauthenticated_endpoints_name_no_user_room_or_message(embedded_settings: Settings) -> None:
    """[R-SEC-13] ``/healthz``, ``/livez``, ``/readyz`` and ``/metrics`` answer without a token and carry no user
    name, room name or message text, after those have been through every path the metrics count."""
    user, room, text = "quokkasecretuser", "zebra-secret-room", "platypus secret text"
    async with serve(embedded_settings) as node, aiohttp.ClientSession() as http:
        async with http.post(node.url + "/api/login", json={"name": user}) as response:
            token = (await response.json())["token"]
        async with connect(node.ws_url, token) as client:
            await client.create(room)
            await client.subscribe(room, after=0)
            await client.send(room, text)
            with pytest.raises(RequestFailed):  # an error path counted by the metrics too
                await client.send(room, "x" * (embedded_settings.limits.max_body_bytes + 1), cmid="too-big")
        for path in ("/healthz", "/livez", "/readyz", "/metrics"):
            async with http.get(node.url + path) as response:
                body = await response.text()
            assert response.status == 200, (path, response.status, body[:200])
            for secret in (user, room, text, "platypus"):
                assert secret not in body, f"{path} names {secret!r}"

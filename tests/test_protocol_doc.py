"""docs/protocol.md stays true to roost.protocol: its examples decode, its frames and codes are complete.

Conventions the doc follows (and this test relies on):

* Frame examples are written one JSON object per line. A ```json block whose first line is an object
  with a ``type`` key is a block of frames; every line of it must decode as a client or a server frame.
* ```console blocks hold transcripts: ``> {...}`` lines are client frames, ``< {...}`` lines and bare
  ``{"type": ...}`` continuation lines (several frames in one WebSocket frame) are server frames.
* Deliberately invalid examples use a ```text fence, which is not checked.
* Section "## 5. Client frames" and "## 6. Server frames" have one "### `tag`" heading per frame type,
  and each such section names every field of the frame in backticks.
* The code table has one row per code, with the number and the name.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from roost.protocol import frames, spec
from roost.protocol.codes import Code
from roost.protocol.errors import UNAVAILABLE_RETRY_AFTER_S, ProtocolError
from roost.protocol.types import Message

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"

CLIENT_FRAMES: tuple[type[msgspec.Struct], ...] = typing.get_args(frames.ClientFrame)
SERVER_FRAMES: tuple[type[msgspec.Struct], ...] = typing.get_args(frames.ServerFrame)
assert Message in SERVER_FRAMES


def _tag(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str), cls
    return tag


def _fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    return cls.__struct_fields__


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """``(info string, line number of the opening fence, lines)`` of every fenced code block."""
    blocks: list[tuple[str, int, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^\s*(`{3,})(\S*)\s*$", lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening.group(1), opening.group(2)
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            i += 1
        blocks.append((info, start, [line.strip() for line in lines[start:i]]))
        i += 1
    return blocks


def _as_frame(line: str) -> dict[str, Any] | None:
    """The line as a JSON object with a ``type`` key, or None."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "type" in value else None


def _unknown_keys(obj: dict[str, Any], decoded: msgspec.Struct) -> set[str]:
    """Keys of the example that the decoded frame does not have (the server would silently ignore them)."""
    unknown = set(obj) - {"type"} - set(_fields(type(decoded)))
    if isinstance(decoded, frames.HistoryPage):
        for raw in obj.get("messages", []):
            unknown |= {f"messages[].{key}" for key in set(raw) - {"type"} - set(_fields(Message))}
    return unknown


def _decode(line: str, decoder: Any) -> msgspec.Struct:
    obj = json.loads(line)
    decoded = decoder(line)
    unknown = _unknown_keys(obj, decoded)
    assert not unknown, f"fields not in {type(decoded).__name__}: {sorted(unknown)}"
    return typing.cast(msgspec.Struct, decoded)


def _decode_either(line: str) -> msgspec.Struct:
    """A frame of either direction (``typing`` and ``history`` exist both ways): the one that fits exactly."""
    failures: list[str] = []
    for decoder in (frames.decode_client, frames.decode_server):
        try:
            return _decode(line, decoder)
        except (ProtocolError, AssertionError) as exc:
            failures.append(str(exc))
    raise AssertionError("; ".join(failures))


def _examples(doc: str) -> list[tuple[str, str, str]]:
    """``(where, direction, line)`` for every frame example: direction is client, server or either."""
    found: list[tuple[str, str, str]] = []
    for info, start, lines in _fenced_blocks(doc):
        if info == "json":
            first = next((line for line in lines if line), "")
            if _as_frame(first) is None:
                continue
            for offset, line in enumerate(lines):
                if line:
                    found.append((f"protocol.md:{start + offset + 1}", "either", line))
        elif info == "console":
            for offset, line in enumerate(lines):
                where = f"protocol.md:{start + offset + 1}"
                if line.startswith("> {"):
                    found.append((where, "client", line[2:]))
                elif line.startswith("< {"):
                    found.append((where, "server", line[2:]))
                elif line.startswith("{") and _as_frame(line) is not None:
                    found.append((where, "server", line))
    return found


def _decoded_examples(doc: str) -> list[tuple[str, msgspec.Struct]]:
    out: list[tuple[str, msgspec.Struct]] = []
    for where, direction, line in _examples(doc):
        try:
            if direction == "client":
                decoded = _decode(line, frames.decode_client)
            elif direction == "server":
                decoded = _decode(line, frames.decode_server)
            else:
                decoded = _decode_either(line)
        except (ProtocolError, AssertionError, ValueError) as exc:
            pytest.fail(f"{where}: {direction} frame example does not decode: {exc}\n  {line}")
        out.append((direction, decoded))
    return out


def test_the_doc_has_frame_examples_in_json_and_in_transcripts(doc: str) -> None:
    examples = _examples(doc)
    assert sum(direction == "either" for _, direction, _ in examples) >= 20
    assert sum(direction == "client" for _, direction, _ in examples) >= 10
    assert sum(direction == "server" for _, direction, _ in examples) >= 10


def test_every_frame_example_decodes(doc: str) -> None:
    _decoded_examples(doc)


def test_every_frame_type_has_an_example(doc: str) -> None:
    seen = {type(decoded) for _, decoded in _decoded_examples(doc)}
    missing = [cls.__name__ for cls in (*CLIENT_FRAMES, *SERVER_FRAMES) if cls not in seen]
    assert not missing, f"frame types without a decodable example in the doc: {missing}"


def _sections(doc: str, heading: str) -> dict[str, str]:
    """The ``### `tag``` subsections of the ``## ...`` section whose title contains ``heading``."""
    match = re.search(rf"^## [^\n]*{re.escape(heading)}[^\n]*$(.*?)(?=^## |\Z)", doc, re.M | re.S)
    assert match is not None, f"no section {heading!r}"
    parts = re.split(r"^### `([a-z_]+)`[^\n]*$", match.group(1), flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.mark.parametrize(
    ("heading", "classes"),
    [("Client frames", CLIENT_FRAMES), ("Server frames", SERVER_FRAMES)],
    ids=["client", "server"],
)
def test_every_frame_type_and_field_is_documented(doc: str, heading: str, classes: tuple[type[Any], ...]) -> None:
    sections = _sections(doc, heading)
    tags = [_tag(cls) for cls in classes]
    assert sorted(sections) == sorted(tags), f"{heading}: sections {sorted(sections)} != frame types {sorted(tags)}"
    for cls in classes:
        section = sections[_tag(cls)]
        missing = [name for name in _fields(cls) if f"`{name}`" not in section]
        assert not missing, f"{heading} `{_tag(cls)}`: fields not documented: {missing}"


def test_every_frame_tag_appears_in_the_doc(doc: str) -> None:
    for cls in (*CLIENT_FRAMES, *SERVER_FRAMES):
        assert f'"type":"{_tag(cls)}"' in doc and f"`{_tag(cls)}`" in doc, _tag(cls)


def test_every_code_is_in_the_code_table(doc: str) -> None:
    rows = [line for line in doc.splitlines() if line.startswith("|")]
    for code in Code:
        matching = [row for row in rows if re.search(rf"\|\s*{code.value}\s*\|", row) and f"`{code.name}`" in row]
        assert matching, f"no table row with {code.value} and `{code.name}`"


def test_the_code_table_lists_nothing_that_is_not_a_code(doc: str) -> None:
    names = set(Code.__members__)
    for row in (line for line in doc.splitlines() if line.startswith("|")):
        match = re.match(r"\|\s*(4\d{3})\s*\|\s*`([A-Z_]+)`\s*\|", row)
        if match is not None:
            assert match.group(2) in names and Code[match.group(2)] == int(match.group(1)), row


def test_the_limits_in_the_doc_are_the_servers() -> None:
    from roost.config import Limits

    text = DOC.read_text(encoding="utf-8")
    limits = Limits()
    for value in (limits.max_body_bytes, limits.max_frame_bytes, limits.max_history_page, limits.outbox_frames):
        assert str(value) in text, value
    assert f"{limits.sends_per_s:g} per second" in text and f"up to {limits.send_burst}" in text


# ---- the machine-readable definition (roost.protocol.spec) and the tables generated from it ----------

JSON_DOC = DOC.parent / "protocol.json"


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return spec.build()


def test_protocol_json_is_what_the_spec_generates(definition: dict[str, Any]) -> None:
    """docs/protocol.json is checked in; regenerating it from the server's types gives the same bytes."""
    assert JSON_DOC.read_text(encoding="utf-8") == spec.render(definition), (
        "docs/protocol.json is stale: run scripts/gen_protocol_doc.py"
    )


def test_roost_spec_prints_protocol_json(capsys: pytest.CaptureFixture[str]) -> None:
    from roost.cli import main

    main(["spec"])
    assert capsys.readouterr().out == JSON_DOC.read_text(encoding="utf-8")


def test_the_generated_tables_of_the_doc_are_current(doc: str, definition: dict[str, Any]) -> None:
    """The code and limit tables between the marker comments are exactly a regeneration."""
    assert spec.splice(doc, spec.doc_regions(definition)) == doc, (
        "a generated table of docs/protocol.md is stale: run scripts/gen_protocol_doc.py"
    )


def test_the_definition_covers_every_frame_code_and_limit(definition: dict[str, Any]) -> None:
    from roost.config import Limits

    assert [f["struct"] for f in definition["frames"]["client"]] == [c.__name__ for c in CLIENT_FRAMES]
    assert [f["struct"] for f in definition["frames"]["server"]] == [c.__name__ for c in SERVER_FRAMES]
    for side, classes in (("client", CLIENT_FRAMES), ("server", SERVER_FRAMES)):
        for frame, cls in zip(definition["frames"][side], classes, strict=True):
            assert [f["name"] for f in frame["fields"]] == list(_fields(cls))
    assert [c["code"] for c in definition["codes"]] == [int(c) for c in Code]
    assert all(c["meaning"] for c in definition["codes"]), "every code needs its docstring in codes.py"
    assert [limit["name"] for limit in definition["limits"]] == list(Limits.__dataclass_fields__)
    ordered = definition["ordering"]
    assert sorted(ordered["writes"] + ordered["pipelined"] + ordered["control"]) == sorted(
        _tag(c) for c in CLIENT_FRAMES
    )
    # The JSON Schema part validates what the decoders accept: every example frame fits one of its types.
    schema = definition["json_schema"]
    assert set(schema["$defs"]) >= {cls.__name__ for cls in (*CLIENT_FRAMES, *SERVER_FRAMES)}


def test_retry_rules_follow_the_error_classes(definition: dict[str, Any]) -> None:
    """4429 carries the rate limiter's wait, 4503 a fixed floor, nothing else a ``retry_after_s``."""
    by_code = {c["code"]: c for c in definition["codes"]}
    assert by_code[4429]["retry_after"] == "computed" and by_code[4429]["retryable"]
    assert by_code[4503]["retry_after"] == "fixed" and by_code[4503]["retry_after_s"] == UNAVAILABLE_RETRY_AFTER_S
    assert {c for c, v in by_code.items() if v["retry_after"] != "none"} == {4429, 4503}
    assert {c for c, v in by_code.items() if v["retryable"]} == {int(c) for c in Code if c.retryable}


def _table(section: str) -> list[list[str]]:
    """The cells of the first Markdown table of ``section`` (header and rule lines dropped)."""
    rows: list[list[str]] = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            break
    return rows[2:]


@pytest.mark.parametrize(("heading", "side"), [("Client frames", "client"), ("Server frames", "server")])
def test_the_field_tables_are_the_definitions_cell_by_cell(
    doc: str, definition: dict[str, Any], heading: str, side: str
) -> None:
    """Each frame's table lists its fields in order, with the type the definition gives (``?``: absent or null)."""
    sections = _sections(doc, heading)
    for frame in definition["frames"][side]:
        rows = [(name.strip("`"), kind) for name, kind, *_ in _table(sections[frame["type"]])]
        wanted = [(field["name"], spec.doc_type(field)) for field in frame["fields"]]
        assert rows == wanted, f"{heading} `{frame['type']}`: table {rows} != definition {wanted}"


def test_the_code_table_says_which_codes_carry_retry_after(doc: str, definition: dict[str, Any]) -> None:
    """The hand-written code table, cell by cell: code and name in order, ``retry_after_s`` where it is sent."""
    section = doc.split("## 12. Error and close codes", 1)[1]
    rows = [row for row in _table(section) if re.fullmatch(r"4\d{3}", row[0])]
    assert [(int(r[0]), r[1].strip("`")) for r in rows] == [(c["code"], c["name"]) for c in definition["codes"]]
    for row, code in zip(rows, definition["codes"], strict=True):
        delivered = row[3]
        assert ("`retry_after_s`" in delivered) == (code["retry_after"] != "none"), row


def _isinstance_classes(call: ast.Call) -> set[str]:
    """``frames.X`` names in ``isinstance(frame, frames.A | frames.B)``."""
    return {n.attr for n in ast.walk(call.args[1]) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}


def test_the_ordering_classes_are_the_gateways_dispatch(definition: dict[str, Any]) -> None:
    """The spec's writes/pipelined/control classes are the ones Session.receive dispatches on."""
    source = (Path(__file__).resolve().parents[1] / "src" / "roost" / "gateway" / "session.py").read_text()
    tree = ast.parse(source)
    receive = next(n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef) and n.name == "receive")
    dispatch = [
        _isinstance_classes(node.test)
        for node in ast.walk(receive)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Call) and ast.unparse(node.test.func) == "isinstance"
    ]
    writes = next((found for found in dispatch if "Send" in found), None)
    pipelined = next((found for found in dispatch if "Ping" in found), None)
    assert writes and pipelined, "Session.receive no longer dispatches with isinstance on frames: update this test"
    names = {cls.__name__: _tag(cls) for cls in CLIENT_FRAMES}
    assert sorted(names[n] for n in writes) == sorted(definition["ordering"]["writes"])
    assert sorted(names[n] for n in pipelined) == sorted(definition["ordering"]["pipelined"])


# ---- rule ids: every normative rule of the prose has a test that names it ------------------------------

TESTS = Path(__file__).resolve().parent
RULE_DOCS = (DOC, DOC.parent / "security.md", DOC.parent / "reliability.md")
RULE_ID = re.compile(r"\bR-([A-Z]+)-(\d+)\b")


def _areas(doc: str) -> set[str]:
    """The fixed list of rule areas, declared at the top of protocol.md as ``AREA``: meaning items."""
    match = re.search(r"^Rule areas: (.*?)\n\n", doc, re.M | re.S)
    assert match is not None, "protocol.md declares its rule areas in a paragraph starting 'Rule areas: '"
    return set(re.findall(r"`([A-Z]+)`", match.group(1)))


def _rules_in_docs() -> dict[str, str]:
    """Every ``[R-AREA-N]`` tag in the docs, by id, with the file it is in; an id is defined once."""
    found: dict[str, str] = {}
    for path in RULE_DOCS:
        for match in re.finditer(r"\[(R-[A-Z]+-\d+)\]", path.read_text(encoding="utf-8")):
            assert match.group(1) not in found, f"{match.group(1)} is defined twice"
            found[match.group(1)] = path.name
    return found


def _rules_named_by_tests() -> dict[str, list[str]]:
    """Rule ids in the docstrings of test functions under tests/, with the tests that name each."""
    named: dict[str, list[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                for match in RULE_ID.finditer(ast.get_docstring(node) or ""):
                    named.setdefault(match.group(0), []).append(f"{path.relative_to(TESTS)}::{node.name}")
    return named


def test_every_rule_of_the_docs_is_named_by_a_test(doc: str) -> None:
    """A rule id in protocol.md or security.md that no test's docstring names is a promise nothing checks."""
    rules, named = _rules_in_docs(), _rules_named_by_tests()
    assert len(rules) >= 30, "the rule tags are gone from the docs"
    areas = _areas(doc)
    assert not {r for r in rules if r.split("-")[1] not in areas}, f"areas must be one of {sorted(areas)}"
    untested = sorted(set(rules) - set(named))
    assert not untested, f"rules no test names in its docstring: {untested}"


def test_every_rule_a_test_names_is_in_the_docs() -> None:
    """A test that names a rule id the docs do not define points at nothing (a typo, or a removed rule)."""
    rules = _rules_in_docs()
    unknown = {rule: tests for rule, tests in _rules_named_by_tests().items() if rule not in rules}
    assert not unknown, f"tests name rules the docs do not have: {unknown}"


def _kib(n: int) -> str:
    return f"{n // 1024} KiB"


def test_the_limits_table_of_security_md_has_the_defaults_of_the_code() -> None:
    """[R-SEC-7] The "Default" column of security.md's limits table, row by row, is ``roost.config.Limits()``
    (the hard frame cap is the transport's ``client_max_size``, 4 x ``max_frame_bytes``)."""
    from roost.config import Limits
    from roost.gateway.budget import STRIKE_WINDOW_S

    limits = Limits()
    wanted = {
        "message body": _kib(limits.max_body_bytes),
        "client frame": f"{_kib(limits.max_frame_bytes)} (hard cap {_kib(4 * limits.max_frame_bytes)} closes the "
        "socket)",
        "sends per user per node": f"{limits.sends_per_s:g}/s, burst {limits.send_burst:g}",
        "typing signals per user per node": f"{limits.typing_per_s:g}/s, burst {2 * limits.typing_per_s:g}",
        "frame budget per connection, in units": f"{limits.frames_per_s:g}/s, burst {limits.frame_burst}",
        "frame budget per user per node, over all their connections": (
            f"{limits.user_frames_per_s:g}/s, burst {limits.user_frame_burst}"
        ),
        "refusals over the frame budget per connection": f"{limits.frame_strikes} in {STRIKE_WINDOW_S:g} s",
        "membership changes per user per node": f"{limits.membership_per_s:g}/s, burst {limits.membership_burst}",
        "receipts and presence changes per user and room": f"one per {limits.coalesce_s:g} s",
        "connections per user per node": str(limits.max_connections_per_user),
        "rooms per user": str(limits.max_rooms_per_user),
        "mentions told per message": str(limits.max_mentions),
        "room mentions": f"{limits.max_room_mention_members} members",
        "history page": f"{limits.max_history_page} messages / {_kib(limits.max_page_bytes)}",
        "`POST /api/sync` answer": f"100 rooms / {limits.max_sync_bytes // 2**20} MiB",
        "searches per user per node": f"{limits.searches_per_s:g}/s, burst {4 * limits.searches_per_s:g}",
        "uploaded file": f"{limits.max_attachment_bytes // 2**20} MiB",
        "image pixels": f"{limits.max_image_pixels:,}",
        "uploads per user per node": f"{limits.uploads_per_s:g}/s, burst {5 * limits.uploads_per_s:g}",
        "authentication timeout": f"{limits.auth_timeout_s:g} s",
        "outgoing queue per connection": f"{limits.outbox_frames:,} frames / {limits.outbox_bytes // 2**20} MiB of "
        "live traffic",
        "one write to a connection's socket": f"{limits.write_timeout_s:g} s",
    }
    wanted |= {
        "a peer that stops answering pings": f"{limits.heartbeat_s:g} s",
        "a revocation whose bus notice was lost": f"{limits.revocation_check_s:g} s",
        "durable consumers on the server": str(limits.max_consumers),
        "failed deliveries in a row per consumer": str(limits.consumer_max_failures),
        "one delivery to a consumer": f"{limits.consumer_timeout_s:g} s; retried after {limits.consumer_backoff_s:g} s "
        f"doubling to {limits.consumer_max_backoff_s:g} s",
        "Web Push devices per user": str(limits.max_push_devices),
        "one push to one device": f"{limits.push_timeout_s:g} s; {limits.push_max_attempts} attempts",
    }
    security = (DOC.parent / "security.md").read_text(encoding="utf-8")
    section = security.split("## Limits (config.Limits)", 1)[1]
    rows = {label.split(" (")[0]: default for label, _, default, _ in _table(section)}
    assert rows == wanted
    close = next(excess for label, _, _, excess in _table(section) if label.startswith("one write"))
    assert f"not taken in {limits.close_timeout_s:g} s" in close
    # Every setting of config.Limits is named in security.md, with its default in one of its two tables.
    named = {name for row in _table(section) for name in re.findall(r"`(\w+)`", row[1])}
    guard = security.split("## Connections before authentication", 1)[1]
    named |= {name for row in _table(guard) for name in re.findall(r"`(\w+)`", row[1])}
    watching = {"presence_interval_s", "head_check_s", "probe_interval_s", "probe_timeout_s", "unready_grace_s"}
    watching |= {"retention_max_messages", "retention_max_age_s", "retention_interval_s", "erase_deletes"}
    watching |= {"consumer_lease_s", "consumer_scan_s", "consumer_cursor_interval_s"}
    watching |= {"push_include_text", "push_ttl_s", "push_allow_http"}
    watching |= {"search_rescan_s", "attachment_orphan_s", "attachment_sweep_s"}
    assert all(f"`{name}`" in section for name in watching)
    assert named | watching == {f.name for f in dataclasses.fields(Limits)}


def test_the_limits_table_of_section_13_has_the_values_of_the_code() -> None:
    """[R-LIMIT-1] The "Value" column of section 13's table, row by row, holds the values the server uses: the
    defaults of ``roost.config.Limits``, the frames in progress of the gateway, the name and ``cmid`` patterns,
    the emoji and seq bounds, the transport's hard frame cap and the default token lifetime."""
    from roost.auth import TokenAuthority
    from roost.config import Limits
    from roost.gateway.session import MAX_IN_FLIGHT
    from roost.protocol.relations import MAX_EMOJI_BYTES
    from roost.protocol.types import _CMID_RE, _ROOM_RE, _USER_RE, MAX_SEQ

    limits = Limits()
    doc = DOC.read_text(encoding="utf-8")
    section = doc.split("\n## 13. Limits\n", 1)[1]
    rows = {label: value for label, value, _ in _table(section)}
    ttl_days = TokenAuthority("a-secret-only-to-read-the-default-ttl!").ttl_s // 86400
    wanted = {
        "`body` of a message": f"{limits.max_body_bytes} bytes",
        "client frame": str(limits.max_frame_bytes),
        "client frame, hard": f"{4 * limits.max_frame_bytes} bytes",
        "HTTP request body": f"{4 * limits.max_frame_bytes} bytes",
        "`history` page": f"clamped to 1-{limits.max_history_page}",
        "a seq a client sends (`after`, `before`, `seq`, `target`)": f"0 to 2**{MAX_SEQ.bit_length() - 1}",
        "catch-up page": f"{limits.catchup_page} messages, and {_kib(limits.max_page_bytes)}",
        "bytes of a page (`max_page_bytes`): `history`, catch-up, each room of `/api/sync`": (
            f"{_kib(limits.max_page_bytes)} of `msg` objects, but at least one message"
        ),
        "bytes of one `/api/sync` answer (`max_sync_bytes`)": f"{limits.max_sync_bytes // 2**20} MiB of `msg` objects",
        "frames in progress per connection": str(MAX_IN_FLIGHT),
        "outbox (frames queued for one connection)": f"{limits.outbox_frames} frames or "
        f"{limits.outbox_bytes // 2**20} MiB",
        "one write to a connection's socket (`write_timeout_s`)": f"{limits.write_timeout_s:g} s",
        "closing a connection (`close_timeout_s`)": f"{limits.close_timeout_s:g} s",
        "sends per user, over all their connections and HTTP (`sends_per_s`, `send_burst`)": (
            f"{limits.sends_per_s:g} per second, bursts up to {limits.send_burst}"
        ),
        "typing signals per user (`typing_per_s`)": f"{limits.typing_per_s:g} per second, bursts up to "
        f"{2 * limits.typing_per_s:g}",
        "connections per user (`max_connections_per_user`)": str(limits.max_connections_per_user),
        "frame budget per connection (`frames_per_s`, `frame_burst`)": (
            f"{limits.frames_per_s:g} units per second, bursts up to {limits.frame_burst}"
        ),
        "frame budget per user, over all their connections to one node (`user_frames_per_s`, `user_frame_burst`)": (
            f"{limits.user_frames_per_s:g} units per second, bursts up to {limits.user_frame_burst}"
        ),
        "membership changes per user, over all their connections and HTTP (`membership_per_s`, `membership_burst`)": (
            f"{limits.membership_per_s:g} per second, bursts up to {limits.membership_burst}"
        ),
        "receipts and presence changes per user and room (`coalesce_s`)": f"one per {limits.coalesce_s:g} s",
        "authentication": f"{limits.auth_timeout_s:g} s",
        "heartbeat": f"ping every {limits.heartbeat_s:g} s; pong expected within {limits.heartbeat_s / 2:g} s",
        "room name": "1-128",
        "rooms per user": f"{limits.max_rooms_per_user} memberships",
        "user name": "1-64",
        "`cmid`": "1-64 printable ASCII",
        "`emoji` of a reaction": f"1-{MAX_EMOJI_BYTES} bytes",
        "token lifetime": f"{ttl_days} days by default",
        "a search (`GET /api/search`, `searches_per_s`)": f"{limits.searches_per_s:g} per second per user, bursts up "
        f"to {4 * limits.searches_per_s:g}",
    }
    assert MAX_SEQ == 2**53
    assert (_ROOM_RE.pattern, _USER_RE.pattern, _CMID_RE.pattern) == (
        r"[A-Za-z0-9_.:@-]{1,128}",
        r"[A-Za-z0-9_.@-]{1,64}",
        r"[\x21-\x7e]{1,64}",
    )
    missing = {label: value for label, value in wanted.items() if value not in rows.get(label, "")}
    assert not missing, f"section 13 does not say (label: value): {missing}"

"""tests/vectors/frames.json against the server's own decoder; test_frame_specs.py (Node) and
tests/browser/test_web.py (a browser) run the same file through the browser client's decoder, so the
Python and JavaScript decoders accept and refuse the same frames."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from roost.protocol import frames
from roost.protocol.errors import ProtocolError

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "frames.json").read_text(encoding="utf-8"))


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [f"{i}-{case['name']}" for i, case in enumerate(cases)]


def _tag(frame: object) -> str:
    config = type(frame).__struct_config__  # type: ignore[attr-defined]
    return str(config.tag)


@pytest.mark.parametrize("case", VECTORS["valid"], ids=_ids(VECTORS["valid"]))
def test_valid_frames_decode(case: dict[str, Any]) -> None:
    frame = frames.decode_server(case["frame"])
    assert _tag(frame) == case["type"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=_ids(VECTORS["invalid"]))
def test_invalid_frames_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        frames.decode_server(case["frame"])


@pytest.mark.parametrize("case", VECTORS["batches"], ids=_ids(VECTORS["batches"]))
def test_batches_split_on_newlines(case: dict[str, Any]) -> None:
    parts = frames.split(case["data"])
    assert [_tag(frames.decode_server(part)) for part in parts] == case["types"]


def test_every_server_frame_type_has_a_valid_vector() -> None:
    tags = {cls.__struct_config__.tag for cls in typing.get_args(frames.ServerFrame)}
    covered = {case["type"] for case in VECTORS["valid"]}
    assert tags <= covered, f"no valid vector for {sorted(tags - covered)}"


def test_frames_from_the_protocol_document_are_still_in_it() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    missing = [c["name"] for c in VECTORS["valid"] if c["name"].startswith("docs/") and c["frame"] not in doc]
    assert not missing, "docs/protocol.md changed; regenerate these vectors: " + ", ".join(missing)


def test_valid_frames_reencode_to_the_same_json() -> None:
    """Decoding keeps every documented field (a vector with a field the decoder drops is a doc bug)."""
    for case in VECTORS["valid"]:
        if not case["name"].startswith("docs/"):
            continue
        frame = frames.decode_server(case["frame"])
        assert msgspec.json.decode(frames.encode(frame)) == json.loads(case["frame"]), case["name"]

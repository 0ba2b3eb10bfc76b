"""tests/vectors/markdown.json through the page's markdown renderer (src/roost/web/markdown.js) under Node:
its parser gives each case's tree, its DOM builder builds exactly that tree (plus the fixed attributes of a
link), and only http, https and mailto URLs become links. The same file runs in chromium
(tests/browser/test_markdown_web.py) through the real DOM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .js import run_js

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "markdown.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
IDS = [f"{i}-{case['name'][:60]}" for i, case in enumerate(CASES)]
ALLOWED = {
    "p": [],
    "strong": [],
    "em": [],
    "code": [],
    "pre": [],
    "blockquote": [],
    "ul": [],
    "ol": ["start"],
    "li": [],
    "a": ["href"],
}
SCHEMES = ("http://", "https://", "mailto:")


def with_link_attributes(tree: Any) -> Any:
    """``tree`` as the DOM holds it: each ``a`` also has rel, target and title (its href)."""
    if isinstance(tree, str):
        return tree
    if tree and isinstance(tree[0], str) and not isinstance(tree[0], list) and tree[0] in ALLOWED:
        tag, rest = tree[0], list(tree[1:])
        attrs = dict(rest.pop(0)) if rest and isinstance(rest[0], dict) else {}
        if tag == "a":
            attrs |= {"rel": "noopener noreferrer", "target": "_blank", "title": attrs["href"]}
        return [tag, *([attrs] if attrs else []), *(with_link_attributes(c) for c in rest)]
    return [with_link_attributes(node) for node in tree]


def elements(tree: Any) -> list[tuple[str, dict[str, str]]]:
    """Every (tag, attributes) in a tree."""
    if isinstance(tree, str):
        return []
    if tree and isinstance(tree[0], str) and tree[0] in ALLOWED:
        rest = list(tree[1:])
        attrs = rest.pop(0) if rest and isinstance(rest[0], dict) else {}
        return [(tree[0], attrs)] + [e for child in rest for e in elements(child)]
    return [e for node in tree for e in elements(node)]


@pytest.fixture(scope="module")
def js_observed() -> dict[str, Any]:
    result: dict[str, Any] = run_js({"markdown": VECTORS})["markdown"]
    return result


def test_the_vectors_only_hold_allowed_elements_and_safe_links() -> None:
    """[R-SEC-70] What the vectors expect is itself safe: allowed elements and attributes only, links to
    http, https and mailto only."""
    for case in CASES:
        for tag, attrs in elements(case["tree"]):
            assert tag in ALLOWED and set(attrs) <= set(ALLOWED[tag]), (case["name"], tag, attrs)
            if tag == "a":
                assert attrs["href"].startswith(SCHEMES), case["name"]
    for url, href in VECTORS["hrefs"]:
        assert href is None or href.startswith(SCHEMES), url


def test_the_renderer_allows_what_the_vectors_allow(js_observed: dict[str, Any]) -> None:
    assert js_observed["allowed"] == ALLOWED
    assert js_observed["rel"] == "noopener noreferrer"


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_the_parser_follows_the_vectors(index: int, js_observed: dict[str, Any]) -> None:
    """[R-CLIENT-70] The subset: bold, italic, code, code blocks, quotes, lists, links, bare URLs."""
    case = CASES[index]
    assert js_observed["parsed"][index] == case["tree"]


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_the_dom_builder_builds_the_tree(index: int, js_observed: dict[str, Any]) -> None:
    """[R-SEC-70] toDom creates the tree's elements and text nodes and nothing else; each link gets
    rel="noopener noreferrer", target="_blank" and its href as title."""
    assert js_observed["built"][index] == with_link_attributes(CASES[index]["tree"])


def test_only_http_https_and_mailto_urls_become_links(js_observed: dict[str, Any]) -> None:
    """[R-SEC-70] javascript:, data:, vbscript:, relative and protocol-relative URLs, credentials, spaces,
    control and direction characters: no link (the text stays text)."""
    assert js_observed["hrefs"] == [href for _, href in VECTORS["hrefs"]]
    assert sum(href is None for _, href in VECTORS["hrefs"]) >= 20


def test_the_dom_builder_refuses_what_is_not_allowed(js_observed: dict[str, Any]) -> None:
    """[R-SEC-70] Even a tree the parser never makes cannot put another element, attribute or URL on the page."""
    assert js_observed["refused"] == [True] * len(VECTORS["refused"])


def test_hostile_input_renders() -> None:
    """16 KB bodies of unmatched markers render without exhausting the stack or hanging (closers that do not
    exist are remembered, nesting is capped)."""
    hostile = ["*a _b [c `d " * 1300, "[" * 16_000, "**" * 8000, "> " * 8000 + "x", "[a](" * 4000, "`" * 16_000]
    result = run_js({"markdown": {"cases": [{"text": t} for t in hostile], "hrefs": []}})["markdown"]
    assert len(result["parsed"]) == len(hostile)

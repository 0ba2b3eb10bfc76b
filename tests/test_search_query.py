"""The search query language and snippets (roost.search.query), without an index: what a typed query means, what
it can never mean, and how a hit's text is cut and marked."""

from __future__ import annotations

import re

import pytest

from roost.protocol.errors import ProtocolError
from roost.search.query import MAX_TERMS, Term, parse, snippet, words


def test_words_phrases_and_prefixes() -> None:
    """[R-SEARCH-3] Words are runs of letters and digits, folded to lower case without diacritics; quotes make a
    phrase; a trailing ``*`` a prefix (of a phrase's last word too); a bare token with punctuation inside is the
    phrase of its words; repeated terms count once."""
    assert words("Crème BRÛLÉE, 2x_large!") == ["creme", "brulee", "2x", "large"]
    assert parse("Hello WORLD hello").terms == (Term(("hello",)), Term(("world",)))
    assert parse('"New York" pizza').terms == (Term(("new", "york")), Term(("pizza",)))
    assert parse("pizz* e-mail").terms == (Term(("pizz",), True), Term(("e", "mail")))
    assert parse('"new yo*"').terms == parse('"new yo"*').terms == (Term(("new", "yo"), True),)
    assert parse("ab-*").terms == (Term(("ab",)),)
    assert parse('"unclosed phrase').terms == (Term(("unclosed", "phrase")),)


def test_engine_syntax_is_only_words() -> None:
    """[R-SEARCH-4] Operators, column filters, NEAR, parentheses, carets, quotes and SQL are words or separators:
    the expressions built for FTS5 and ``to_tsquery`` hold nothing but quoted words and their own operators."""
    for text in ["NEAR(a b, 2)", "body:x OR rid:r1", "x) OR (1=1", "'; DROP TABLE docs; --", "{body}: x", "x^ -y"]:
        query = parse(text)
        fts5 = query.fts5()
        inner = fts5.removeprefix("body : (").removesuffix(")")
        assert all(part.startswith('"') and part.endswith('"') for part in inner.split(" AND ")), fts5
        for term in query.terms:
            assert all(w.isalnum() for w in term.words)
        lexeme = r"'[^\W_]+'(:\*)?"
        term = rf"({lexeme}|\({lexeme}( <-> {lexeme})+\))"
        assert re.fullmatch(rf"{term}( & {term})*", query.tsquery()), query.tsquery()


@pytest.mark.parametrize(
    "text", ["", "   ", "***", '""', "-- ; ()", "a*", "x" * 257, " ".join(f"w{i}" for i in range(MAX_TERMS + 1))]
)
def test_queries_refused_with_4400(text: str) -> None:
    """[R-SEARCH-4] No word, over 256 characters, over 16 terms, a prefix under 2 characters: 4400."""
    with pytest.raises(ProtocolError) as refused:
        parse(text)
    assert refused.value.code == 4400


def test_snippets_are_text_cut_around_the_first_match_with_offsets() -> None:
    """[R-SEARCH-6] A short text comes whole, whitespace collapsed; a long one is cut at words around the first
    match, with ``…`` where it was cut; the offsets are code points of the snippet and cover the matched words."""
    query = parse('ocean "blue sky" wav*')
    text, spans = snippet("The  blue\nsky over the ocean, waves.", query)
    assert text == "The blue sky over the ocean, waves."
    assert [text[a:b] for a, b in spans] == ["blue", "sky", "ocean", "waves"]
    long = " ".join(["filler"] * 60) + " 🌊 <b>Ocean</b> " + " ".join(["after"] * 60)
    cut, spans = snippet(long, query)
    assert cut.startswith("…") and cut.endswith("…") and len(cut) <= 170
    assert [cut[a:b] for a, b in spans] == ["Ocean"] and "<b>Ocean</b>" in cut
    assert cut[1:].split(" ")[0] in ("filler", "🌊")  # cut at a word
    whole, spans = snippet("no match at all", parse("zebra"))
    assert (whole, spans) == ("no match at all", [])

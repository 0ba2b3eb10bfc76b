"""Search queries and snippets, sans-I/O: shared by both index engines so that they find and show alike.

A query is what a user types: plain words (all must match), ``"quoted phrases"`` (the words in that order) and
``word*`` (any word starting so). Everything else is text: operators (``AND``, ``OR``, ``NOT``, ``NEAR``), column
filters (``body:``), parentheses, SQL, are only words or separators here, so no input can be a syntax error of
FTS5 or ``to_tsquery``, nor reach anything but the words it holds (R-SEARCH-4). Words are runs of letters and
digits (``[^\\W_]+``), folded to lower case without diacritics (``fold``), which is what SQLite's ``unicode61``
tokenizer (``remove_diacritics 2``) makes of a text; the PostgreSQL index is given the same folded words, so
both engines see the same tokens.

A snippet is the hit's text (the latest edit) with its whitespace collapsed, cut to about ``SNIPPET_CHARS``
around the first matched word, with the matched words' ``[start, end)`` offsets in code points: plain text that
a client shows as text, never markup (R-SEARCH-6).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from ..protocol.codes import Code
from ..protocol.errors import ProtocolError

__all__ = [
    "MAX_QUERY_CHARS",
    "MAX_TERMS",
    "MIN_PREFIX",
    "SNIPPET_CHARS",
    "Query",
    "Term",
    "fold",
    "parse",
    "snippet",
    "words",
]

MAX_QUERY_CHARS: Final = 256
"""A longer query is 4400: a search names a few words, and each costs a doclist read."""
MAX_TERMS: Final = 16
"""Words, phrases and prefixes of one query (the words of a phrase count once): more is 4400."""
MIN_PREFIX: Final = 2
"""A prefix (``word*``) needs this many characters: ``a*`` would read the doclists of every word in ``a``."""
SNIPPET_CHARS: Final = 160
"""About how long a snippet is (a shorter text comes whole)."""

WORD: Final = re.compile(r"[^\W_]+")
_SPACE: Final = re.compile(r"\s+")


def fold(text: str) -> str:
    """Lower case without diacritics (``Café`` -> ``cafe``), as ``unicode61 remove_diacritics 2`` does."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    """The folded words of ``text``, in order: what an index holds of it."""
    return [w for m in WORD.finditer(text) for w in WORD.findall(fold(m.group()))]


@dataclass(frozen=True, slots=True)
class Term:
    """One thing that must match: a word, or words in a row (a phrase); ``prefix``: the last is a prefix."""

    words: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    terms: tuple[Term, ...]

    def fts5(self) -> str:
        """The FTS5 expression of the terms, each a quoted string (nothing in it is FTS5 syntax but the quotes,
        ``*`` and ``AND`` written here), for the column ``body``."""
        parts = []
        for term in self.terms:
            quoted = '"' + " ".join(term.words).replace('"', '""') + '"'
            parts.append(quoted + " *" if term.prefix else quoted)
        return "body : (" + " AND ".join(parts) + ")"

    def tsquery(self) -> str:
        """The ``to_tsquery`` text of the terms: each word single-quoted (words hold letters and digits only),
        ``<->`` between the words of a phrase, ``:*`` on a prefix, ``&`` between terms."""
        parts = []
        for term in self.terms:
            lexemes = ["'" + w.replace("'", "''").replace("\\", "\\\\") + "'" for w in term.words]
            if term.prefix:
                lexemes[-1] += ":*"
            parts.append(lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")")
        return " & ".join(parts)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """``[start, end)`` of the words of ``text`` that make a match: each word of a word term or a prefix term,
        the words of each place a phrase occurs (not its words elsewhere)."""
        tokens = [(w, m.span()) for m in WORD.finditer(text) for w in WORD.findall(fold(m.group()))]
        marked: set[tuple[int, int]] = set()
        for term in self.terms:
            n = len(term.words)
            for i in range(len(tokens) - n + 1):
                if all(_same(tokens[i + k][0], term.words[k], term.prefix and k == n - 1) for k in range(n)):
                    marked.update(span for _, span in tokens[i : i + n])
        return sorted(marked)


def _same(word: str, wanted: str, prefix: bool) -> bool:
    return word.startswith(wanted) if prefix else word == wanted


def parse(text: str) -> Query:
    """The query's terms, or 4400 when it is too long, names too many terms, or holds no word at all."""
    if len(text) > MAX_QUERY_CHARS:
        raise ProtocolError(f"a search is at most {MAX_QUERY_CHARS} characters", Code.BAD_FRAME)
    terms: list[Term] = []
    for phrase, star, bare in re.findall(r'"([^"]*)"?(\*?)|([^\s"]+)', text):
        stem = (phrase.rstrip() if phrase else bare).rstrip("*")
        found = words(stem)
        # "ab*", "a b*" and "a b"*: a prefix; "ab-*" is the word "ab"
        starred = bool(star) or (phrase or bare).rstrip().endswith("*")
        prefix = starred and WORD.fullmatch(stem[-1:]) is not None
        if not found:
            continue
        if prefix and len(found[-1]) < MIN_PREFIX:
            raise ProtocolError(f"a prefix (word*) needs at least {MIN_PREFIX} characters", Code.BAD_FRAME)
        term = Term(tuple(found), prefix)
        if term not in terms:
            terms.append(term)
    if not terms:
        raise ProtocolError("nothing to search for: give at least one word", Code.BAD_FRAME)
    if len(terms) > MAX_TERMS:
        raise ProtocolError(f"a search names at most {MAX_TERMS} words, phrases or prefixes", Code.BAD_FRAME)
    return Query(tuple(terms))


def snippet(body: str, query: Query, width: int = SNIPPET_CHARS) -> tuple[str, list[tuple[int, int]]]:
    """The text around the first match, and the ``[start, end)`` code-point offsets of the matched words in it."""
    text = _SPACE.sub(" ", body).strip()
    spans = query.spans(text)
    if len(text) <= width:
        return text, spans
    anchor = spans[0][0] if spans else 0
    start = max(0, min(anchor - width // 4, len(text) - width))
    if start > 0:
        space = text.find(" ", start, anchor)
        if space != -1 and space - start < width // 4:
            start = space + 1  # begin at a word
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", max(start, end - width // 4), end)
        if space > start:
            end = space  # end at a word
    lead = "…" if start > 0 else ""
    tail = "…" if end < len(text) else ""
    shift = len(lead) - start
    kept = [(a + shift, b + shift) for a, b in spans if a >= start and b <= end]
    return lead + text[start:end] + tail, kept

"""Splitting a guideline for map-reduce, one copy for the runner (which summarizes the parts)
and the API (which estimates a job's LLM calls and tokens from the same parts): chunks cut
at paragraph, then sentence, then word boundaries, and partial summaries packed for reduce."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Final

PARAGRAPH_BREAK: Final = re.compile(r"\n[ \t]*\n\s*")
# End of a sentence (with closing quotes/brackets) or of a line, and the blank after it.
# A line end's match starts at the newline: only where matches end counts (_last_break),
# and `[ \t]*\n`, tried from every blank of a long run without one, was quadratic.
SENTENCE_BREAK: Final = re.compile(r"(?:[.!?…][\"')\]]*[ \t]+|\n\s*)")
WHITESPACE: Final = re.compile(r"\s+")

# A list marker: a bullet, "1." or "1)" or "a)", or a clause number such as "3.1" or "2.4.1".
BULLET: Final = re.compile(
    r"^\s*(?:[-*\u2022\u25aa\u25e6\u2013]|\(?\d{1,3}[.)]|\d{1,3}(?:\.\d{1,3})+\.?"
    r"|\(?[a-zA-Z][.)])\s+"
)
# Only the opening `#`s: the closing ones are stripped with str methods. The former
# `(.*?)\s*#*\s*$` was cubic in a run of blanks inside a heading (2,000 blanks: 30 s).
_HEADING_MD: Final = re.compile(r"\s{0,3}#{1,6}\s+")
_NUMBERED: Final = re.compile(r"^\s*\d{1,3}(?:\.\d{1,3})*[.)]?\s+")


def _last_break(pattern: re.Pattern[str], window: str, lowest: int) -> int | None:
    """The offset just after the last match of `pattern` ending at or after `lowest`."""
    best = None
    for match in pattern.finditer(window):
        if match.end() >= lowest:
            best = match.end()
    return best


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Cut `text` into consecutive pieces of at most `max_chars` characters whose
    concatenation is exactly `text`. Cuts fall after a paragraph break if one lies in the
    second half of the window, else after a sentence (or line) end in its last three
    quarters, else after any whitespace, else (one enormous word) at the limit."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    chunks: list[str] = []
    start = 0
    while len(text) - start > max_chars:
        window = text[start : start + max_chars]
        cut = (
            _last_break(PARAGRAPH_BREAK, window, max_chars // 2)
            or _last_break(SENTENCE_BREAK, window, max_chars // 4)
            or _last_break(WHITESPACE, window, 1)
            or max_chars
        )
        chunks.append(text[start : start + cut])
        start += cut
    chunks.append(text[start:])
    return chunks


def _pieces(text: str, max_chars: int) -> list[str]:
    """`text` cut after every paragraph break, pieces longer than `max_chars` cut again by
    `chunk_text`; the concatenation is exactly `text`."""
    pieces: list[str] = []
    start = 0
    for match in PARAGRAPH_BREAK.finditer(text):
        pieces.extend(chunk_text(text[start : match.end()], max_chars))
        start = match.end()
    if start < len(text):
        pieces.extend(chunk_text(text[start:], max_chars))
    return pieces


def _is_anchor(piece: str, expected_chars: int) -> bool:
    """Whether a chunk may end after `piece`: decided by the piece's own content (a hash),
    with a probability that grows with its length, so chunks average `expected_chars`."""
    digest = hashlib.sha256(piece.strip().encode("utf-8", "surrogatepass")).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    return draw < len(piece) / expected_chars


def content_chunks(text: str, max_chars: int) -> list[str]:
    """Cut `text` into consecutive chunks of at most `max_chars` characters whose
    concatenation is exactly `text`, at paragraph breaks chosen by their content
    (content-defined chunking): a chunk ends after a paragraph that is an "anchor" (see
    `_is_anchor`) once it holds half of `max_chars`, or before it would overflow (chunks
    average about three quarters of `max_chars`).

    Editing one section changes the chunks around it only: after the edit the cuts fall
    at the same anchors as before, so the per-chunk summary cache still has the other
    chunks' summaries. (Cutting at fixed sizes would shift every later cut.)"""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    minimum, expected = max_chars // 2, max(1, max_chars // 4)
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, max_chars):
        if current and len(current) + len(piece) > max_chars:
            chunks.append(current)
            current = ""
        current += piece
        if len(current) >= minimum and _is_anchor(piece, expected):
            chunks.append(current)
            current = ""
    if current or not chunks:
        chunks.append(current)
    return chunks


def group_texts(texts: Sequence[str], max_chars: int, separator_chars: int = 2) -> list[list[str]]:
    """Pack consecutive `texts` into groups of at most `max_chars` characters (separators
    counted). A group always takes at least two texts when two remain, so every round of
    grouping shrinks the list: a reduce over it ends even if the texts are large."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for text in texts:
        added = len(text) + (separator_chars if current else 0)
        if current and len(current) >= 2 and size + added > max_chars:
            groups.append(current)
            current, size = [], 0
            added = len(text)
        current.append(text)
        size += added
    if current:
        groups.append(current)
    return groups


def heading_of(line: str) -> str | None:
    """The heading text if `line` looks like a section heading: a Markdown heading, or a
    short line without final punctuation that ends with a colon or is in title or upper
    case."""
    stripped = line.strip()
    if not stripped:
        return None
    markdown = _HEADING_MD.match(stripped)
    title = stripped[markdown.end() :].rstrip().rstrip("#").rstrip() if markdown else "\n"
    if "\n" not in title:  # a heading is one line
        return title.strip() or None
    if len(stripped) > 80:
        return None
    numbered = _NUMBERED.match(stripped)
    if numbered:  # "3. Sharps" is a numbered heading, "3. Wash hands." a list item
        title = stripped[numbered.end() :]
        return title if title and title[-1] not in ".!?;,:" and _title_like(title) else None
    if BULLET.match(stripped):
        return None
    if stripped.endswith(":") and len(stripped.split()) <= 8:
        return stripped.rstrip(":").strip() or None
    if stripped[-1] in ".!?;,":
        return None
    return stripped.rstrip(":").strip() if _title_like(stripped) else None


def _title_like(line: str) -> bool:
    """Up to eight words, in upper case or with every longer word capitalised."""
    words = re.findall(r"[A-Za-z][\w'-]*", line)
    if not words or len(words) > 8:
        return False
    return line.isupper() or all(w[0].isupper() or len(w) <= 3 for w in words)


def section_count(text: str) -> int:
    """How many sections `text` has by its own headings (`heading_of` on each line); a
    text without any heading is one section."""
    headings = sum(1 for line in text.splitlines() if heading_of(line) is not None)
    return max(1, headings)

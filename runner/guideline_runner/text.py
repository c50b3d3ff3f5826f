"""Splitting text without losing any of it: chunks for map-reduce summarization (cut at
paragraph, then sentence, then word boundaries) and the sentences of a guideline with
their offsets (for the extractive provider and the obligation finder)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final

_PARAGRAPH_BREAK: Final = re.compile(r"\n[ \t]*\n\s*")
# End of a sentence (with closing quotes/brackets) or of a line, and the blank after it.
# A line end's match starts at the newline: only where matches end counts (_last_break),
# and `[ \t]*\n`, tried from every blank of a long run without one, was quadratic.
_SENTENCE_BREAK: Final = re.compile(r"(?:[.!?…][\"')\]]*[ \t]+|\n\s*)")
_WHITESPACE: Final = re.compile(r"\s+")


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
            _last_break(_PARAGRAPH_BREAK, window, max_chars // 2)
            or _last_break(_SENTENCE_BREAK, window, max_chars // 4)
            or _last_break(_WHITESPACE, window, 1)
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
    for match in _PARAGRAPH_BREAK.finditer(text):
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


# A list marker: a bullet, "1." or "1)" or "a)", or a clause number such as "3.1" or "2.4.1".
_BULLET: Final = re.compile(
    r"^\s*(?:[-*\u2022\u25aa\u25e6\u2013]|\(?\d{1,3}[.)]|\d{1,3}(?:\.\d{1,3})+\.?"
    r"|\(?[a-zA-Z][.)])\s+"
)
# Only the opening `#`s: the closing ones are stripped with str methods. The former
# `(.*?)\s*#*\s*$` was cubic in a run of blanks inside a heading (2,000 blanks: 30 s).
_HEADING_MD: Final = re.compile(r"\s{0,3}#{1,6}\s+")
_NUMBERED: Final = re.compile(r"^\s*\d{1,3}(?:\.\d{1,3})*[.)]?\s+")


class Unit:
    """A sentence or list item of a guideline: its text with whitespace collapsed, its
    place among the units, the section heading above it, and its span in the original
    text (`text[start:end]` is the sentence as written, line breaks included)."""

    __slots__ = ("end", "heading", "index", "start", "text")

    def __init__(self, text: str, index: int, heading: str | None, start: int, end: int) -> None:
        self.text = text
        self.index = index
        self.heading = heading
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        return (
            f"Unit({self.index}, {self.text!r}, heading={self.heading!r}, {self.start}:{self.end})"
        )


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
    if _BULLET.match(stripped):
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


# Longest piece of text given to pysbd at once (longer sentences are rare in guidelines).
SEGMENT_MAX_CHARS: Final = 400


@lru_cache(maxsize=1)
def _segmenter() -> Any:
    # pysbd (rule-based, the Golden Rules of sentence boundaries: abbreviations, numbers,
    # "e.g.", quotes) is imported on first use so the runner starts without it.
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The sentences of `text[start:end]` as (start, end) offsets into `text`, without
    the blanks around them."""
    # Line breaks inside a paragraph end a sentence to pysbd; blanks of the same length
    # keep every offset valid.
    block = text[start:end].replace("\r", " ").replace("\n", " ")
    spans: list[tuple[int, int]] = []
    base = start
    # pysbd's rules backtrack on some punctuation runs (a crafted 30,000-character line
    # took 38 s, cubic in its length): it only ever sees pieces of at most
    # SEGMENT_MAX_CHARS, cut at a sentence end or a blank where there is one, so the cost
    # stays linear in the text.
    for part in chunk_text(block, SEGMENT_MAX_CHARS):
        cursor = 0
        for segment in _segmenter().segment(part):
            piece = segment.strip()
            if not piece:
                continue
            found = part.find(piece, cursor)
            if found < 0:  # pysbd keeps the text with clean=False; never seen, stay exact
                continue
            spans.append((base + found, base + found + len(piece)))
            cursor = found + len(piece)
        base += len(part)
    return spans


def _blocks(text: str) -> list[tuple[str | None, int, int]]:
    """Paragraphs and list items of `text` as (heading above, start, end) spans; headings
    and blank lines are not part of any block, nor a list item's bullet."""
    blocks: list[tuple[str | None, int, int]] = []
    heading: str | None = None
    current: list[int] | None = None  # [start, end] of the open block
    offset = 0
    for line in text.splitlines(keepends=True):
        line_start, offset = offset, offset + len(line)
        content = line.rstrip("\r\n")
        if not content.strip():
            current = None
            continue
        found = heading_of(content)
        if found is not None:
            current = None
            heading = found
            continue
        bullet = _BULLET.match(content)
        if bullet or current is None:
            lead = bullet.end() if bullet else len(content) - len(content.lstrip())
            current = [line_start + lead, line_start + len(content.rstrip())]
            blocks.append((heading, current[0], current[1]))
        else:
            current[1] = line_start + len(content.rstrip())
            blocks[-1] = (heading, current[0], current[1])
    return blocks


def split_units(text: str) -> list[Unit]:
    """The sentences and list items of `text` in order, each with the nearest heading
    above it and its span. Headings themselves are not units. Lines of a paragraph are
    joined, except that a bulleted or numbered line starts a new item; sentences are found
    by pysbd."""
    return list(_units(text))


@lru_cache(maxsize=4)
def _units(text: str) -> tuple[Unit, ...]:
    # The checklist and the obligation finder both split the same text; pysbd needs
    # about 2.6 s for 100,000 characters, so it runs once.
    units: list[Unit] = []
    for heading, block_start, block_end in _blocks(text):
        for start, end in sentence_spans(text, block_start, block_end):
            units.append(
                Unit(_WHITESPACE.sub(" ", text[start:end]), len(units), heading, start, end)
            )
    return tuple(units)

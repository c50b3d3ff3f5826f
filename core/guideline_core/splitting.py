"""Splitting a guideline without losing any of it, shared by the runner (which cuts it)
and the operator (which sizes a job's time budget by it): chunks for map-reduce
summarization (cut at paragraph, then sentence, then word boundaries, at content-defined
places), the sections a checklist is drawn from (at the guideline's own headings, then by
size), and the plan of a job's LLM calls that follows from them."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Final

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
BULLET: Final = re.compile(
    r"^\s*(?:[-*\u2022\u25aa\u25e6\u2013]|\(?\d{1,3}[.)]|\d{1,3}(?:\.\d{1,3})+\.?"
    r"|\(?[a-zA-Z][.)])\s+"
)
# Only the opening `#`s: the closing ones are stripped with str methods. The former
# `(.*?)\s*#*\s*$` was cubic in a run of blanks inside a heading (2,000 blanks: 30 s).
_HEADING_MD: Final = re.compile(r"\s{0,3}#{1,6}\s+")
_NUMBERED: Final = re.compile(r"^\s*\d{1,3}(?:\.\d{1,3})*[.)]?\s+")


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


def checklist_sections(text: str, max_chars: int) -> list[str]:
    """`text` in the sections its checklist is drawn from, one LLM call each: cut before
    every heading line (`heading_of`: Markdown `#`, numbered or title/upper-case lines),
    a section longer than `max_chars` cut again by size (`chunk_text`), and consecutive
    short sections packed together up to `max_chars` (a guideline of many small headings
    is not one call per heading). The concatenation is exactly `text`; a text of at most
    `max_chars` is one section."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    if len(text) <= max_chars:
        return [text]
    starts = [0]
    offset = 0
    for line in text.splitlines(keepends=True):
        if offset and heading_of(line.rstrip("\r\n")) is not None:
            starts.append(offset)
        offset += len(line)
    sections: list[str] = []
    current = ""
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        for piece in chunk_text(text[start:end], max_chars):
            if current and len(current) + len(piece) > max_chars:
                sections.append(current)
                current = ""
            current += piece
    if current or not sections:
        sections.append(current)
    return sections


def map_parts(text: str, chunk_chars: int) -> list[str]:
    """The parts a guideline longer than `chunk_chars` is summarized in, one LLM call
    each (blank parts dropped); a shorter one is a single part."""
    if len(text) <= chunk_chars:
        return [text.strip()]
    return [part for part in (p.strip() for p in content_chunks(text, chunk_chars)) if part]


def planned_rounds(text: str, chunk_chars: int, concurrency: int) -> int:
    """An estimate of how many LLM calls the chain makes one after the other with
    `concurrency` calls in flight: the map step's parts, the combine calls (at most one
    fewer than the parts), then one checklist call per section. A short guideline takes
    2 rounds."""
    parts = len(map_parts(text, chunk_chars))
    checklist_calls = len(checklist_sections(text, chunk_chars))
    return (
        math.ceil(parts / concurrency)
        + math.ceil((parts - 1) / concurrency)
        + math.ceil(checklist_calls / concurrency)
    )


def planned_rounds_for_chars(chars: int, chunk_chars: int, concurrency: int) -> int:
    """`planned_rounds` of a text known only by its length (a document the runner has not
    extracted yet): full parts and sections of `chunk_chars` each."""
    parts = max(1, math.ceil(chars / chunk_chars))
    return (
        math.ceil(parts / concurrency)
        + math.ceil((parts - 1) / concurrency)
        + math.ceil(parts / concurrency)
    )


def time_limit(base: float, per_round: float, rounds: int) -> float:
    """A time limit grown by the job's size: `base` covers a short guideline's 2 rounds
    of calls, each further round adds `per_round` seconds."""
    return base + per_round * max(0, rounds - 2)

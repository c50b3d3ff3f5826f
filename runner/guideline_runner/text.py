"""Splitting text without losing any of it: chunks for map-reduce summarization (cut at
paragraph, then sentence, then word boundaries) and sentences for the extractive
provider."""

from __future__ import annotations

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


# A blank after a sentence end (possibly closed by a quote or bracket) before a capital.
_SENTENCE_END: Final = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_BULLET: Final = re.compile(
    r"^\s*(?:[-*\u2022\u25aa\u25e6\u2013]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])\s+"
)
# Only the opening `#`s: the closing ones are stripped with str methods. The former
# `(.*?)\s*#*\s*$` was cubic in a run of blanks inside a heading (2,000 blanks: 30 s).
_HEADING_MD: Final = re.compile(r"\s{0,3}#{1,6}\s+")


class Unit:
    """A sentence or list item of a guideline, with its position and section heading."""

    __slots__ = ("heading", "index", "text")

    def __init__(self, text: str, index: int, heading: str | None) -> None:
        self.text = text
        self.index = index
        self.heading = heading

    def __repr__(self) -> str:
        return f"Unit({self.index}, {self.text!r}, heading={self.heading!r})"


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
    if len(stripped) > 80 or _BULLET.match(stripped):
        return None
    if stripped.endswith(":") and len(stripped.split()) <= 8:
        return stripped.rstrip(":").strip() or None
    if stripped[-1] in ".!?;,":
        return None
    words = [w for w in re.findall(r"[A-Za-z][\w'-]*", stripped)]
    if not words or len(words) > 8:
        return None
    if stripped.isupper() or all(w[0].isupper() or len(w) <= 3 for w in words):
        return stripped.rstrip(":").strip()
    return None


def split_units(text: str) -> list[Unit]:
    """The sentences and list items of `text` in order, each with the nearest heading
    above it. Headings themselves are not units. Lines of a paragraph are joined, except
    that a bulleted or numbered line starts a new item."""
    units: list[Unit] = []
    heading: str | None = None
    blocks: list[tuple[str | None, str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append((heading, " ".join(paragraph)))
            paragraph.clear()

    for line in text.splitlines():
        if not line.strip():
            flush()
            continue
        found = heading_of(line)
        if found is not None:
            flush()
            heading = found
            continue
        if _BULLET.match(line):
            flush()
            paragraph.append(_BULLET.sub("", line, count=1).strip())
            continue
        paragraph.append(line.strip())
    flush()

    for block_heading, block in blocks:
        for sentence in _SENTENCE_END.split(block):
            sentence = _WHITESPACE.sub(" ", sentence).strip()
            if sentence:
                units.append(Unit(sentence, len(units), block_heading))
    return units

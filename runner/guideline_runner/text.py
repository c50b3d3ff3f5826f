"""The sentences of a guideline with their offsets (for the extractive provider and the
obligation finder). Chunks for map-reduce summarization are cut by
`guideline_core.splitting` (the operator sizes a job's time budget by them); its
functions are re-exported here."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

from guideline_core.splitting import (
    BULLET,
    chunk_text,
    content_chunks,
    group_texts,
    heading_of,
    map_parts,
)

__all__ = [
    "Unit",
    "chunk_text",
    "content_chunks",
    "group_texts",
    "heading_of",
    "map_parts",
    "sentence_spans",
    "split_units",
]

_WHITESPACE: Final = re.compile(r"\s+")


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
        bullet = BULLET.match(content)
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

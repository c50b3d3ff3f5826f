"""Markdown as written (the markup is part of the text users quote), a section per heading
(ATX `#` and setext underlines, not inside fenced code)."""

from __future__ import annotations

import re

from guideline_core.documents.sniff import MediaType

from .model import ExtractedDocument, ExtractionLimits, TextBuilder
from .sections import Heading, sections_from_headings

EXTRACTOR = "markdown-headings"
EXTRACTOR_VERSION = "1"

# A heading may open a list item ("* #### Before").
_ATX = re.compile(
    r" {0,3}(?:[*+-][ \t]+|\d{1,9}[.)][ \t]+)?(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$"
)
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(```|~~~)")


def extract_markdown(source: str, limits: ExtractionLimits) -> ExtractedDocument:
    """The Markdown after hygiene, with its heading sections."""
    builder = TextBuilder(limits)
    builder.append(source)
    text = builder.text()
    return ExtractedDocument(
        text=text,
        media_type=MediaType.MARKDOWN,
        extractor=EXTRACTOR,
        extractor_version=EXTRACTOR_VERSION,
        sections=sections_from_headings(headings(text), len(text)),
        warnings=builder.warnings(),
    )


def headings(text: str) -> list[Heading]:
    """The Markdown's headings, in order."""
    found: list[Heading] = []
    fence: str | None = None
    offset = 0
    previous: tuple[int, str] | None = None  # the last paragraph line: a setext candidate
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        start, offset = offset, offset + len(line)
        if fence is not None:
            if bare.lstrip(" ").startswith(fence):
                fence = None
            continue
        if match := _FENCE.match(bare):
            fence, previous = match.group(1), None
            continue
        if match := _ATX.match(bare):
            found.append(Heading(start, len(match.group(1)), (match.group(2) or "").strip()))
            previous = None
        elif previous is not None and (match := _SETEXT.match(bare)):
            level = 1 if match.group(1).startswith("=") else 2
            found.append(Heading(previous[0], level, previous[1].strip()))
            previous = None
        elif bare.strip():
            previous = (start, bare) if previous is None else previous
        else:
            previous = None
    return found

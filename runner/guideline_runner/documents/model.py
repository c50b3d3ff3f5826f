"""What extraction produces, its limits, its errors, and how a text range is cited."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TypeVar

from guideline_core.documents.hygiene import TextWarning, clean_text, merge_warnings


class DocumentError(Exception):
    """A document that cannot become a job's text; `reason` is the job's failure reason.

    The subclasses are named after those reasons (the issue's and the runner's vocabulary),
    hence no Error suffix."""

    reason = "document_unreadable"


class DocumentUnreadable(DocumentError):  # noqa: N818
    """Corrupt, encrypted, or a decompression bomb."""

    reason = "document_unreadable"


class NoTextLayer(DocumentError):  # noqa: N818
    """A PDF with no text layer (a scan): there is no OCR here to pretend with."""

    reason = "no_text_layer"


class DocumentTooLong(DocumentError):  # noqa: N818
    """Over the page or the character limit."""

    reason = "document_too_long"


@dataclass(frozen=True)
class ExtractionLimits:
    """Caps enforced while parsing, so an oversized or hostile document stops early."""

    max_pages: int = 1_000
    max_characters: int = 2_000_000
    # DOCX: the zip's members as declared (Python's zipfile never inflates past the declared
    # size), one member and all together.
    max_docx_member_bytes: int = 64 * 1024 * 1024
    max_docx_total_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class PageSpan:
    """Characters [start, end) of the text come from this page (1-based) and printed label."""

    start: int
    end: int
    page_number: int
    page_label: str | None = None


@dataclass(frozen=True)
class SectionSpan:
    """Characters [start, end) of the text sit under this heading path (outermost first)."""

    start: int
    end: int
    heading_path: tuple[str, ...]


_Span = TypeVar("_Span", PageSpan, SectionSpan)


@dataclass(frozen=True)
class ExtractedDocument:
    """A document's text after hygiene, with where each part of it came from."""

    text: str
    media_type: str
    extractor: str
    extractor_version: str
    pages: list[PageSpan] = field(default_factory=list)
    sections: list[SectionSpan] = field(default_factory=list)
    warnings: list[TextWarning] = field(default_factory=list)


@dataclass(frozen=True)
class Citation:
    """Where a quote sits: every page and section it touches (a quote across a page break
    names both pages)."""

    pages: list[int]
    page_labels: list[str | None]
    sections: list[tuple[str, ...]]


def cite(document: ExtractedDocument, start: int, end: int) -> Citation:
    """The pages, page labels and sections that the text range [start, end) overlaps."""
    if not 0 <= start <= end <= len(document.text):
        raise ValueError(f"range [{start}, {end}) is outside the text ({len(document.text)})")
    pages = _overlapping(document.pages, start, end)
    sections = _overlapping(document.sections, start, end)
    return Citation(
        pages=[page.page_number for page in pages],
        page_labels=[page.page_label for page in pages],
        sections=[section.heading_path for section in sections],
    )


def _overlapping(spans: list[_Span], start: int, end: int) -> list[_Span]:
    """Spans (sorted, disjoint) that share a character with [start, end); an empty range
    belongs to the span it sits in."""
    first = bisect.bisect_right([span.end for span in spans], start)
    hits: list[_Span] = []
    for span in spans[first:]:
        if span.start >= max(end, start + 1):
            break
        hits.append(span)
    return hits


class TextBuilder:
    """Assembles a document's text piece by piece: hygiene on each piece, spans in the clean
    text, warnings at offsets in the raw text, and the character limit checked as it grows."""

    def __init__(self, limits: ExtractionLimits) -> None:
        self._limits = limits
        self._parts: list[str] = []
        self._length = 0
        self._raw_length = 0
        self._warnings: list[TextWarning] = []

    @property
    def length(self) -> int:
        """Characters so far (clean)."""
        return self._length

    def append(self, raw: str) -> tuple[int, int]:
        """Add a piece; its [start, end) in the clean text."""
        cleaned = clean_text(raw)
        self._warnings.extend(w.shifted(self._raw_length) for w in cleaned.warnings)
        start = self._length
        self._parts.append(cleaned.text)
        self._length += len(cleaned.text)
        self._raw_length += len(raw)
        if self._length > self._limits.max_characters:
            raise DocumentTooLong(
                f"the document has more than {self._limits.max_characters:,} characters of text"
            )
        return start, self._length

    def text(self) -> str:
        """The text so far."""
        return "".join(self._parts)

    def warnings(self) -> list[TextWarning]:
        """One warning per kind of repair."""
        return merge_warnings(self._warnings)

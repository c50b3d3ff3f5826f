"""Document extraction in the runner pod, where a parser crash or a decompression bomb hurts
nobody: PDF, DOCX, HTML, Markdown and plain text to one text with page and section spans."""

from __future__ import annotations

from guideline_core.documents.sniff import MediaType, UnsupportedDocumentError, decode_text, sniff

from .docx import extract_docx
from .html import extract_html
from .markdown import extract_markdown
from .model import (
    Citation,
    DocumentError,
    DocumentTooLong,
    DocumentUnreadable,
    ExtractedDocument,
    ExtractionLimits,
    NoTextLayer,
    PageSpan,
    SectionSpan,
    cite,
)
from .pdf import extract_pdf
from .text import extract_text

__all__ = [
    "Citation",
    "DocumentError",
    "DocumentTooLong",
    "DocumentUnreadable",
    "ExtractedDocument",
    "ExtractionLimits",
    "NoTextLayer",
    "PageSpan",
    "SectionSpan",
    "cite",
    "extract",
]


def extract(
    data: bytes, limits: ExtractionLimits | None = None, *, plain_text: bool = False
) -> ExtractedDocument:
    """The document's text, told by its content; DocumentError (with a `reason`) when it
    cannot become a job's text. `plain_text`: text declared as plain (a JSON submission) is
    taken as written even when it looks like HTML or Markdown."""
    limits = limits or ExtractionLimits()
    try:
        sniffed = sniff(data)
    except UnsupportedDocumentError as error:
        # The API refuses these up front; one that reaches the runner anyway is unreadable.
        raise DocumentUnreadable(str(error)) from None
    if sniffed.media_type is MediaType.PDF:
        return extract_pdf(data, limits)
    if sniffed.media_type is MediaType.DOCX:
        return extract_docx(data, limits)
    assert sniffed.encoding is not None  # the text formats always have one
    if len(data) > 4 * limits.max_characters + 4:  # no character takes more than 4 bytes
        raise DocumentTooLong(f"the text has more than {limits.max_characters:,} characters")
    text = decode_text(data, sniffed.encoding)
    if plain_text:
        return extract_text(text, limits)
    if sniffed.media_type is MediaType.HTML:
        return extract_html(text, limits)
    if sniffed.media_type is MediaType.MARKDOWN:
        return extract_markdown(text, limits)
    return extract_text(text, limits)

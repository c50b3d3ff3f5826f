"""Plain text: the decoded text after hygiene; no pages, no sections."""

from __future__ import annotations

from guideline_core.documents.sniff import MediaType

from .model import ExtractedDocument, ExtractionLimits, TextBuilder

EXTRACTOR = "text"
EXTRACTOR_VERSION = "1"


def extract_text(text: str, limits: ExtractionLimits) -> ExtractedDocument:
    """The text after hygiene."""
    builder = TextBuilder(limits)
    builder.append(text)
    return ExtractedDocument(
        text=builder.text(),
        media_type=MediaType.TEXT,
        extractor=EXTRACTOR,
        extractor_version=EXTRACTOR_VERSION,
        warnings=builder.warnings(),
    )

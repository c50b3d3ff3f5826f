"""PDF text with pypdfium2 (PDFium, Chromium's PDF engine: fast, robust against malformed
files; Apache-2.0/BSD-3-Clause), page by page, with each page's printed label (/PageLabels,
which PDFium reads)."""

from __future__ import annotations

import pypdfium2
import pypdfium2.version
from guideline_core.documents.sniff import MediaType

from .model import (
    DocumentTooLong,
    DocumentUnreadable,
    ExtractedDocument,
    ExtractionLimits,
    NoTextLayer,
    PageSpan,
    TextBuilder,
)

EXTRACTOR = "pypdfium2"
EXTRACTOR_VERSION = (
    f"{pypdfium2.version.PYPDFIUM_INFO} (pdfium {pypdfium2.version.PDFIUM_INFO.build})"
)
PAGE_SEPARATOR = "\n"


def extract_pdf(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    """The PDF's text, one span per page; NoTextLayer when no page has any text."""
    document = _open(data)
    try:
        page_count = len(document)
        if page_count > limits.max_pages:
            raise DocumentTooLong(
                f"the PDF has {page_count:,} pages; at most {limits.max_pages:,} are accepted"
            )
        builder = TextBuilder(limits)
        pages: list[PageSpan] = []
        for index in range(page_count):
            if index:
                builder.append(PAGE_SEPARATOR)
            start, end = builder.append(_page_text(document, index))
            label = document.get_page_label(index) or None
            pages.append(PageSpan(start, end, index + 1, label))
    finally:
        document.close()
    text = builder.text()
    if page_count and not text.strip():
        raise NoTextLayer(
            f"the PDF's {page_count:,} page(s) have no text layer (a scan?): "
            "run OCR on it first, or submit the text"
        )
    return ExtractedDocument(
        text=text,
        media_type=MediaType.PDF,
        extractor=EXTRACTOR,
        extractor_version=EXTRACTOR_VERSION,
        pages=pages,
        warnings=builder.warnings(),
    )


def _open(data: bytes) -> pypdfium2.PdfDocument:
    try:
        return pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as error:
        if "password" in str(error).lower():
            raise DocumentUnreadable("the PDF is encrypted: submit it without a password") from None
        raise DocumentUnreadable(f"the PDF cannot be read ({error})") from None


def _page_text(document: pypdfium2.PdfDocument, index: int) -> str:
    try:
        page = document[index]
    except pypdfium2.PdfiumError as error:
        raise DocumentUnreadable(f"page {index + 1} of the PDF cannot be read ({error})") from None
    try:
        text_page = page.get_textpage()
        try:
            text = text_page.get_text_bounded()
        finally:
            text_page.close()
    finally:
        page.close()
    # PDFium ends lines with CR LF (the service's text ends them with LF) and marks a hyphen
    # at which it joined a line broken after it with U+0002: it is the word's own hyphen.
    return text.replace("\r\n", "\n").replace("\x02", "-")

"""Tell a document's format by its content (magic bytes, then structure), never by its name.

Supported: PDF, DOCX, HTML, Markdown and plain text (UTF-8, or UTF-16 with a byte-order mark).
Anything else raises `UnsupportedDocumentError` with a message a user can act on; the API answers it
with 415.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO


class MediaType(StrEnum):
    """The media types a guideline may be submitted as."""

    PDF = "application/pdf"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    HTML = "text/html"
    MARKDOWN = "text/markdown"
    TEXT = "text/plain"


class UnsupportedDocumentError(ValueError):
    """The bytes are not a document this service reads; the message says what they are."""

    reason = "unsupported_media_type"


@dataclass(frozen=True)
class Sniffed:
    """What a document is; `encoding` is set for the text formats (HTML, Markdown, text)."""

    media_type: MediaType
    encoding: str | None = None


# The PDF header may follow up to 1 KiB of junk (as PDF readers accept).
_PDF_HEADER_WINDOW = 1024
_DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
# [Content_Types].xml is small; read no more than this of it (it is read as bytes, not parsed as
# XML, so no entity expansion can happen here).
_CONTENT_TYPES_MAX = 1 << 20
_TEXT_SAMPLE = 64 * 1024
_BOMS = (  # UTF-32 before UTF-16: FF FE 00 00 starts with the UTF-16 LE BOM
    (codecs.BOM_UTF32_LE, None),
    (codecs.BOM_UTF32_BE, None),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_KNOWN_BINARIES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "a legacy Office file (.doc/.xls): save it as DOCX or PDF",
    ),
    (b"{\\rtf", "an RTF file: save it as DOCX or PDF"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)
_HTML_START = re.compile(
    r"\A\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]", re.I | re.S
)
_HTML_ANYWHERE = re.compile(r"<(?:html|head|body)[\s>]", re.I)
# Bounded link text and target: an unbounded `[^\]\n]+` rescans to the end of a line from
# every `[`, quadratic on text with many brackets and no `]` (found by tests/test_security.py).
_MARKDOWN_SIGNS = re.compile(
    r"^(?:#{1,6}[ \t]+\S|\S[^\n]*\n(?:=+|-+)[ \t]*$|```|~~~)"
    r"|\[[^\]\n]{1,500}\]\([^)\s]{1,2000}\)",
    re.M,
)


def sniff(data: bytes) -> Sniffed:
    """The media type (and text encoding); `UnsupportedDocumentError` for anything else."""
    return sniff_file(io.BytesIO(data))


def sniff_file(source: BinaryIO) -> Sniffed:
    """`sniff` of a seekable binary file (an upload spooled to disk), read in pieces: never
    the whole file in memory. Leaves the file at its start."""
    source.seek(0)
    head = source.read(_TEXT_SAMPLE + 4)
    try:
        if not head:
            raise UnsupportedDocumentError("the document is empty")
        if b"%PDF-" in head[:_PDF_HEADER_WINDOW]:
            return Sniffed(MediaType.PDF)
        if head.startswith(b"PK\x03\x04"):
            source.seek(0)
            _check_docx(source)
            return Sniffed(MediaType.DOCX)
        for magic, what in _KNOWN_BINARIES:
            if head.startswith(magic):
                raise UnsupportedDocumentError(f"the document is {what}, not a supported format")
        source.seek(0)
        encoding = _text_encoding(head, source)
        sample = decode_text(head, encoding, partial=True)
        if _HTML_START.match(sample) or _HTML_ANYWHERE.search(sample[:1024]):
            return Sniffed(MediaType.HTML, encoding)
        if _MARKDOWN_SIGNS.search(sample):
            return Sniffed(MediaType.MARKDOWN, encoding)
        return Sniffed(MediaType.TEXT, encoding)
    finally:
        source.seek(0)


def decode_text(data: bytes, encoding: str, *, partial: bool = False) -> str:
    """Text-format bytes as a string (`partial`: `data` may end inside a character)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    return decoder.decode(data, final=not partial)


def _check_docx(source: BinaryIO) -> None:
    """A zip is a DOCX only with a `word/document.xml` declared as the document's main part."""
    try:
        with zipfile.ZipFile(source) as archive:
            names = set(archive.namelist())
            if "word/document.xml" not in names or "[Content_Types].xml" not in names:
                raise UnsupportedDocumentError(
                    "the document is a zip archive but not a Word document "
                    "(no word/document.xml): submit a DOCX, PDF, HTML or text file"
                )
            with archive.open("[Content_Types].xml") as member:
                content_types = member.read(_CONTENT_TYPES_MAX).decode("utf-8", "replace")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
        raise UnsupportedDocumentError(
            f"the document looks like a zip archive but is corrupt: {error}"
        ) from None
    if _DOCX_MAIN not in content_types:
        raise UnsupportedDocumentError(
            "the zip archive has word/document.xml but is not a DOCX "
            "(its main part is not a wordprocessingml document; a macro-enabled .docm is refused)"
        )


def _text_encoding(head: bytes, source: BinaryIO) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM; anything else is unsupported.
    `head` is the start of `source`; UTF-8 is checked over the whole file, in pieces."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            if encoding is None:
                raise UnsupportedDocumentError("UTF-32 text is not supported: save it as UTF-8")
            return encoding
    sample = head[:_TEXT_SAMPLE]
    if b"\x00" in sample:
        if _looks_like_utf16(sample):
            raise UnsupportedDocumentError(
                "the text looks like UTF-16 without a byte-order mark: save it as UTF-8 "
                "(or UTF-16 with a BOM)"
            )
        raise UnsupportedDocumentError("the document is binary data, not a supported format")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    try:
        while piece := source.read(_TEXT_SAMPLE):
            decoder.decode(piece)
            offset += len(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise UnsupportedDocumentError(
            f"the text is not UTF-8 (invalid byte at offset {offset + error.start}) and has no "
            "UTF-16 byte-order mark: save it as UTF-8"
        ) from None
    return "utf-8"


def _looks_like_utf16(sample: bytes) -> bool:
    """Mostly ASCII text in UTF-16: every other byte is NUL."""
    even, odd = sample[0::2], sample[1::2]
    return max(even.count(0), odd.count(0)) >= 0.4 * (len(sample) // 2)

"""Format sniffing by content (core/guideline_core/documents/sniff.py): the real generated
documents whatever their file name, text encodings, and bad inputs refused with a reason."""

from __future__ import annotations

import codecs
import os
import zipfile
from pathlib import Path

import pytest
from guideline_core.documents.sniff import MediaType, UnsupportedDocumentError, sniff
from support.documents import GUIDELINES, NAMES, SCANNED_PDF, guideline, zip_bytes

EXPECTED = {
    ".pdf": MediaType.PDF,
    ".docx": MediaType.DOCX,
    ".html": MediaType.HTML,
    ".md": MediaType.MARKDOWN,
}


@pytest.mark.parametrize("suffix", sorted(EXPECTED))
@pytest.mark.parametrize("name", NAMES)
def test_real_documents_are_told_by_content(name: str, suffix: str) -> None:
    assert sniff(guideline(name, suffix).read_bytes()).media_type is EXPECTED[suffix]


def test_image_only_pdf_is_still_a_pdf() -> None:
    assert sniff(SCANNED_PDF.read_bytes()).media_type is MediaType.PDF


def test_pdf_header_after_junk_is_a_pdf() -> None:
    data = b"\r\n junk before the header \n" + guideline(NAMES[0], ".pdf").read_bytes()
    assert sniff(data).media_type is MediaType.PDF


def test_plain_text_and_its_encodings() -> None:
    prose = "Hand hygiene: wash for 20 seconds.\nDry thoroughly — with a clean towel.\n"
    assert sniff(prose.encode()).media_type is MediaType.TEXT
    assert sniff(codecs.BOM_UTF8 + prose.encode()).encoding == "utf-8-sig"
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        sniffed = sniff(bom + prose.encode(codec))
        assert (sniffed.media_type, sniffed.encoding) == (MediaType.TEXT, "utf-16")
    markdown = guideline(NAMES[1], ".md").read_text()
    sniffed = sniff(codecs.BOM_UTF16_LE + markdown.encode("utf-16-le"))
    assert (sniffed.media_type, sniffed.encoding) == (MediaType.MARKDOWN, "utf-16")


def test_html_fragment_without_doctype_is_html() -> None:
    assert sniff(b"<!-- saved page -->\n<html><body><p>x</p></body></html>").media_type is (
        MediaType.HTML
    )


def _refused(data: bytes) -> str:
    with pytest.raises(UnsupportedDocumentError) as raised:
        sniff(data)
    assert raised.value.reason == "unsupported_media_type"
    return str(raised.value)


def test_a_zip_that_is_not_docx_is_refused() -> None:
    assert "not a Word document" in _refused(zip_bytes({"readme.txt": b"hello"}))


def test_a_zip_with_word_document_but_wrong_content_type_is_refused() -> None:
    data = zip_bytes(
        {
            "[Content_Types].xml": b'<Types><Override PartName="/word/document.xml" '
            b'ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/></Types>',
            "word/document.xml": b"<w:document/>",
        }
    )
    assert "not a DOCX" in _refused(data)


def test_a_truncated_zip_is_refused() -> None:
    docx = guideline(NAMES[0], ".docx").read_bytes()
    assert "corrupt" in _refused(docx[: len(docx) // 2])


def test_an_odt_is_refused() -> None:
    odt = zip_bytes({"mimetype": b"application/vnd.oasis.opendocument.text",
                     "content.xml": b"<office:document-content/>"}, zipfile.ZIP_STORED)  # fmt: skip
    assert "not a Word document" in _refused(odt)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + os.urandom(64), "PNG"),
        (b"\xff\xd8\xff\xe0" + os.urandom(64), "JPEG"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "legacy Office"),
        (b"{\\rtf1\\ansi hello}", "RTF"),
        ("Wash hands.\n".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
        (codecs.BOM_UTF32_LE + "x".encode("utf-32-le"), "UTF-32"),
        ("Caf\u00e9 in Latin-1".encode("latin-1"), "not UTF-8"),
        (bytes(range(256)) * 4, "binary"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(data: bytes, says: str) -> None:
    assert says in _refused(data)


def test_random_bytes_are_refused() -> None:
    # Random bytes are almost never valid UTF-8; both refusals name what is wrong.
    message = _refused(b"\xfe" + os.urandom(4096))
    assert "not UTF-8" in message or "binary" in message


def test_the_file_name_does_not_matter(tmp_path: Path) -> None:
    misnamed = tmp_path / "guideline.pdf"
    misnamed.write_bytes(guideline(NAMES[2], ".docx").read_bytes())
    assert sniff(misnamed.read_bytes()).media_type is MediaType.DOCX
    assert GUIDELINES.is_dir()

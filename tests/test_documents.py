"""Extraction in the runner (runner/guideline_runner/documents) on real guidelines, checked
against independent tools: poppler's pdftotext for PDF (whole text, page by page, and the
page of known phrases), pandoc's plain rendering of the source Markdown for DOCX and HTML,
pypdf for page labels; and the failures a user must be told about: no text layer,
unreadable (corrupt, encrypted, decompression bomb), too long."""

from __future__ import annotations

import io
import re
import zipfile
from html.parser import HTMLParser

import pytest
from guideline_runner.documents import (
    DocumentTooLong,
    DocumentUnreadable,
    ExtractedDocument,
    ExtractionLimits,
    NoTextLayer,
    cite,
    extract,
)
from pypdf import PdfReader, PdfWriter
from support.documents import (
    NAMES,
    PAGE_LABELLED_PDF,
    SCANNED_PDF,
    guideline,
    pandoc_plain,
    pdftotext,
    similarity,
    words,
    zip_bytes,
)

_EXTRACTED: dict[str, ExtractedDocument] = {}


def extracted(name: str, suffix: str) -> ExtractedDocument:
    """Each test document extracted once per session."""
    key = name + suffix
    if key not in _EXTRACTED:
        _EXTRACTED[key] = extract(guideline(name, suffix).read_bytes())
    return _EXTRACTED[key]


@pytest.mark.parametrize("name", NAMES)
def test_pdf_text_matches_pdftotext(name: str) -> None:
    document = extracted(name, ".pdf")
    assert similarity(words(document.text), words(pdftotext(guideline(name, ".pdf")))) >= 0.98
    assert document.media_type == "application/pdf"
    assert document.extractor == "pypdfium2"


@pytest.mark.parametrize("name", NAMES)
def test_every_page_has_the_words_pdftotext_finds_on_it(name: str) -> None:
    document = extracted(name, ".pdf")
    path = guideline(name, ".pdf")
    assert [page.page_number for page in document.pages] == list(
        range(1, len(PdfReader(path).pages) + 1)
    )
    for page in document.pages:
        ours = set(words(document.text[page.start : page.end]))
        poppler = set(words(pdftotext(path, page.page_number, page.page_number)))
        # 3% of the page's words may differ (at least 3: pdftotext glues words across table
        # cells on a short page), and no more.
        assert len(ours ^ poppler) <= max(3, 0.03 * len(ours | poppler)), (page, ours ^ poppler)


@pytest.mark.parametrize("name", NAMES)
def test_a_phrase_is_cited_on_the_page_pdftotext_finds_it_on(name: str) -> None:
    document = extracted(name, ".pdf")
    path = guideline(name, ".pdf")
    checked = 0
    for page in document.pages:
        lines = pdftotext(path, page.page_number, page.page_number).splitlines()
        for line in lines:
            phrase = line.split()
            if len(phrase) < 6:
                continue
            pattern = r"\s+".join(re.escape(word) for word in phrase)
            matches = list(re.finditer(pattern, document.text))
            if len(matches) != 1:  # repeated elsewhere (or split differently): try the next
                continue
            citation = cite(document, matches[0].start(), matches[0].end())
            assert citation.pages == [page.page_number], (phrase, citation)
            checked += 1
            break
    assert checked >= 0.9 * len(document.pages)


def test_a_quote_across_a_page_break_names_both_pages() -> None:
    document = extracted(NAMES[1], ".pdf")
    first, second = document.pages[4], document.pages[5]
    citation = cite(document, first.end - 20, second.start + 20)
    assert citation.pages == [5, 6]
    assert citation.sections == []


def test_page_labels_are_the_printed_ones_as_pypdf_reads_them() -> None:
    document = extract(PAGE_LABELLED_PDF.read_bytes())
    labels = [page.page_label for page in document.pages]
    assert labels == PdfReader(PAGE_LABELLED_PDF).page_labels
    assert labels[:4] == ["i", "ii", "1", "2"]
    third = document.pages[2]
    assert cite(document, third.start, third.start + 10).page_labels == ["1"]
    # Without /PageLabels there is no printed label to cite.
    assert {page.page_label for page in extracted(NAMES[1], ".pdf").pages} == {None}


def test_an_image_only_pdf_has_no_text_layer() -> None:
    with pytest.raises(NoTextLayer) as raised:
        extract(SCANNED_PDF.read_bytes())
    assert raised.value.reason == "no_text_layer"
    assert "OCR" in str(raised.value)


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_a_truncated_pdf_is_unreadable(keep: float) -> None:
    data = guideline(NAMES[2], ".pdf").read_bytes()
    with pytest.raises(DocumentUnreadable) as raised:
        extract(data[: int(len(data) * keep)])
    assert raised.value.reason == "document_unreadable"


def test_an_encrypted_pdf_is_unreadable_and_says_so() -> None:
    writer = PdfWriter(clone_from=guideline(NAMES[1], ".pdf"))
    writer.encrypt("secret")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(DocumentUnreadable, match="encrypted"):
        extract(buffer.getvalue())


def test_a_pdf_over_the_page_limit_is_too_long() -> None:
    data = guideline(NAMES[2], ".pdf").read_bytes()
    with pytest.raises(DocumentTooLong, match="53 pages") as raised:
        extract(data, ExtractionLimits(max_pages=52))
    assert raised.value.reason == "document_too_long"
    assert len(extract(data, ExtractionLimits(max_pages=53)).pages) == 53


@pytest.mark.parametrize("suffix", [".pdf", ".docx", ".html", ".md"])
def test_over_the_character_limit_is_too_long(suffix: str) -> None:
    data = guideline(NAMES[0], suffix).read_bytes()
    with pytest.raises(DocumentTooLong, match="10,000 characters"):
        extract(data, ExtractionLimits(max_characters=10_000))


@pytest.mark.parametrize("suffix", [".docx", ".html"])
@pytest.mark.parametrize("name", NAMES)
def test_docx_and_html_text_match_pandocs_reading_of_the_source(name: str, suffix: str) -> None:
    document = extracted(name, suffix)
    reference = words(pandoc_plain(guideline(name, ".md")))
    assert similarity(words(document.text), reference) >= 0.98


@pytest.mark.parametrize("suffix", [".docx", ".html", ".md"])
def test_sections_carry_the_heading_path(suffix: str) -> None:
    document = extracted(NAMES[2], suffix)
    quote = "Memorized secrets SHALL be at least 8 characters in length"
    start = document.text.index(quote)
    citation = cite(document, start, start + len(quote))
    assert len(citation.sections) == 1
    path = citation.sections[0]
    assert [re.sub(r"[#*_]", "", title).strip() for title in path[1:]] == [
        "5 Authenticator and Verifier Requirements",
        "5.1 Requirements by Authenticator Type",
        # 5.1.1 and 5.1.1.1 are both level-4 headings in NIST's own Markdown
        "5.1.1.1 Memorized Secret Authenticators",
    ]
    assert path[0].startswith("NIST Special Publication 800-63B")
    assert citation.pages == []
    assert document.pages == []


@pytest.mark.parametrize("suffix", [".docx", ".html", ".md"])
def test_every_heading_pandoc_sees_is_a_section(suffix: str) -> None:
    # pandoc's HTML of the source, read back with the standard library's parser: the reference.
    reference = _HeadingTitles()
    reference.feed(guideline(NAMES[0], ".html").read_text())
    titles = [section.heading_path[-1] for section in extracted(NAMES[0], suffix).sections]
    assert [words(title) for title in titles] == [words(title) for title in reference.titles]


def test_markdown_text_is_the_source_as_written() -> None:
    source = guideline(NAMES[1], ".md").read_text()
    assert extracted(NAMES[1], ".md").text == source


def test_hygiene_applies_to_extracted_text() -> None:
    mojibake = "\u00e2\u0084\u00a2"
    html = f"<html><body><h1>Brand{mojibake}</h1><p>Wash\x07 hands.</p></body></html>"
    document = extract(html.encode())
    assert document.text == "Brand\u2122\n\nWash\ufffd hands."
    assert {w.kind for w in document.warnings} == {"mojibake", "control_characters"}
    assert document.sections[0].heading_path == ("Brand\u2122",)
    markdown = f"# Title\n\nBrand{mojibake} names.\n".encode("utf-16")
    assert extract(markdown).text == "# Title\n\nBrand\u2122 names.\n"


def test_deeply_nested_html_is_extracted() -> None:
    html = "<html><body>" + "<div>" * 20_000 + "deep" + "</div>" * 20_000 + "</body></html>"
    assert extract(html.encode()).text == "deep"


def test_a_docx_decompression_bomb_is_refused_before_inflating() -> None:
    docx = guideline(NAMES[1], ".docx").read_bytes()
    bomb = zip_bytes({"word/media/image1.png": bytes(65 * 1024 * 1024)})
    assert len(bomb) < 200_000  # a small upload ...
    with_bomb = _add_members(docx, {"word/media/image1.png": bytes(65 * 1024 * 1024)})
    with pytest.raises(DocumentUnreadable, match="decompression bomb"):
        extract(with_bomb)  # ... refused on its declared size, over the 64 MiB member cap
    many = _add_members(docx, {f"word/media/{i}.bin": bytes(2 << 20) for i in range(3)})
    with pytest.raises(DocumentUnreadable, match="inflates to"):
        extract(many, ExtractionLimits(max_docx_total_bytes=4 << 20))


def test_a_docx_member_larger_than_declared_is_unreadable() -> None:
    docx = guideline(NAMES[1], ".docx").read_bytes()
    archive = bytearray(_add_members(docx, {"word/document.xml": None}))
    # Lie about word/document.xml's size (local header and central directory): zipfile stops
    # at the declared size and the CRC check fails, whatever the data would inflate to.
    name = b"word/document.xml"
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = archive.find(signature)
        while at >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if archive[name_at : name_at + len(name)] == name:
                archive[at + size_at : at + size_at + 4] = (100).to_bytes(4, "little")
            at = archive.find(signature, at + 4)
    with pytest.raises(DocumentUnreadable, match=r"Bad CRC-32 for file 'word/document\.xml'"):
        extract(bytes(archive))


class _HeadingTitles(HTMLParser):
    """The text of every <h1>-<h6>, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self._inside = True
            self.titles.append("")

    def handle_endtag(self, tag: str) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.titles[-1] += data


def _add_members(docx: bytes, members: dict[str, bytes | None]) -> bytes:
    """The DOCX with members added (or, for None, rewritten last with their own content)."""
    source = zipfile.ZipFile(io.BytesIO(docx))
    contents = {info.filename: source.read(info) for info in source.infolist()}
    for name, data in members.items():
        contents[name] = contents.pop(name) if data is None else data
    return zip_bytes(contents)


def test_a_docx_with_a_billion_laughs_is_unreadable() -> None:
    # Entity expansion in word/document.xml: expat's amplification limit (>= 2.4) stops it.
    docx = guideline(NAMES[1], ".docx").read_bytes()
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10)
    )
    source = zipfile.ZipFile(io.BytesIO(docx))
    document = source.read("word/document.xml").split(b"?>", 1)[1]
    laughing = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [' + entities + b"]>"
        + document.replace(b"Identity Proofing", b"&lol9;", 1)
    )  # fmt: skip
    with pytest.raises(DocumentUnreadable, match="amplification"):
        extract(_add_members(docx, {"word/document.xml": laughing}))

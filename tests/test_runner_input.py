"""The runner's input from a document (spec.guidelineTextFrom's mounted file): extracted
under the settings' limits, the extractive chain run on the text, and every checklist
source cited with its page (checked against poppler's pdftotext) or its heading path
(checked against the Markdown the document was made from); documents that cannot become
text fail for good with the issue's reasons and a message a user can act on."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from guideline_core.resource import FailureReason, RunnerExit
from guideline_core.settings import RunnerSettings
from guideline_runner import input as runner_input
from guideline_runner.chain import run_chain
from guideline_runner.citations import with_citations
from guideline_runner.errors import ChainError
from guideline_runner.fit import fit, json_bytes, room_for_result
from guideline_runner.input import JobInput, read_input
from guideline_runner.models import ChainResult
from guideline_runner.providers import make_provider
from pypdf import PdfReader
from support.documents import PAGE_LABELLED_PDF, SCANNED_PDF, guideline, pdftotext, words

FROM_CONFIG_MAP = {"guidelineTextFrom": {"configMapKeyRef": {"name": "g", "key": "doc"}}}


def settings_for(path: Path | None, **overrides: Any) -> RunnerSettings:
    values: dict[str, Any] = {
        "provider": "extractive",
        "input_file": str(path) if path else None,
        "soft_timeout_seconds": 120.0,
    }
    values.update(overrides)
    return RunnerSettings(**values)


def job_input(path: Path, **overrides: Any) -> JobInput:
    return read_input(FROM_CONFIG_MAP, settings_for(path, **overrides), None)


@cache
def cited(path: Path, **overrides: Any) -> tuple[JobInput, ChainResult]:
    """The document's input and its extractive result with citations (once per session)."""
    settings = settings_for(path, **overrides)
    found = read_input(FROM_CONFIG_MAP, settings, None)
    provider = make_provider(settings)
    try:
        result = run_chain(found.text, settings, provider)
    finally:
        provider.close()
    return found, with_citations(result, found.document, found.info)


def failure(path: Path, **overrides: Any) -> ChainError:
    with pytest.raises(ChainError) as raised:
        job_input(path, **overrides)
    return raised.value


def _joined(text: str) -> str:
    """The text's words, hyphens dropped (pdftotext joins a word broken at a hyphen at a
    line end: `low-` `impact` reads `lowimpact`)."""
    return " ".join(words(text.replace("-", "")))


@cache
def poppler_pages(path: Path) -> list[set[str]]:
    """Each page's words as pdftotext reads it (index 0: page 1)."""
    count = len(PdfReader(path).pages)
    return [set(_joined(pdftotext(path, n, n)).split()) for n in range(1, count + 1)]


def share_on(quote: set[str], pages: list[set[str]]) -> float:
    """The share of the quote's words that pdftotext finds on these pages (word order is
    not compared: pdftotext and PDFium read table cells and columns in different orders)."""
    return len(quote & set().union(*pages)) / len(quote)


PDFS = [
    guideline("nist-sp800-63b-authentication", ".pdf"),
    guideline("federal-plain-language-guidelines", ".pdf"),
    PAGE_LABELLED_PDF,
]


@pytest.mark.parametrize("path", PDFS, ids=lambda p: p.stem)
def test_pdf_sources_are_cited_on_the_page_pdftotext_finds_them(path: Path) -> None:
    found, result = cited(path)
    assert found.info is not None and found.info.media_type == "application/pdf"
    assert found.info.pages == len(PdfReader(path).pages)
    pages = poppler_pages(path)
    grounded = [item for item in result.checklist if item.source is not None]
    assert len(grounded) >= 10
    checked = 0
    for item in grounded:
        source = item.source
        assert source is not None and source.page is not None
        assert found.text[source.start : source.end] == source.quote
        # Every place the item is quoted is cited as its source is.
        assert item.sources[0] == source
        for place in item.sources:
            assert place.page is not None and found.text[place.start : place.end] == place.quote
        last = source.page_end or source.page
        assert source.page_end is None or source.page_end > source.page
        quote = set(_joined(source.quote).split())
        if len(quote) < 6:  # too few words to tell one page from another
            continue
        # The cited page(s) hold most of the quote's words, as pdftotext reads them
        # (PDFium splits a word now and then: "incl udes"), and no other page holds more.
        ours = share_on(quote, pages[source.page - 1 : last])
        assert ours >= 0.8, (source, ours)
        best = max(share_on(quote, [page]) for page in pages)
        assert ours >= best, (source, ours, best)
        checked += 1
    assert checked >= 0.8 * len(grounded)


def test_page_labels_are_cited_as_printed() -> None:
    _, result = cited(PAGE_LABELLED_PDF)
    labels = PdfReader(PAGE_LABELLED_PDF).page_labels
    cited_labels = [i.source.page_label for i in result.checklist if i.source is not None]
    assert cited_labels and None not in cited_labels
    for item in result.checklist:
        if item.source is not None:
            assert item.source.page is not None
            assert item.source.page_label == labels[item.source.page - 1]


def test_a_quote_across_a_page_break_cites_both_pages() -> None:
    found, result = cited(PDFS[0])
    assert found.document is not None
    spanning = [i for i in result.checklist if i.source and i.source.page_end]
    assert spanning  # the extractive provider quotes whole sentences, some across pages
    for item in spanning:
        assert item.source is not None and item.source.page is not None
        page_break = found.document.pages[item.source.page - 1].end
        assert item.source.start < page_break < item.source.end
    # A single-page source carries no page_end at all (the CRD takes no nulls there).
    status = result.to_status()
    single = [i["source"] for i in status["checklist"] if i["source"]]
    single = [
        source for source in single if source["page"] == source.get("page_end", source["page"])
    ]
    assert single and all("page_end" not in source for source in single)


def _markdown_headings(markdown: Path) -> set[str]:
    headings = set()
    for line in markdown.read_text().splitlines():
        if match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            headings.add(_joined(match.group(1)))
    return headings


@pytest.mark.parametrize("suffix", [".docx", ".html"])
@pytest.mark.parametrize(
    "name", ["nist-sp800-63b-authentication", "nist-sp800-63a-identity-proofing"]
)
def test_docx_and_html_sources_are_cited_with_their_heading_path(name: str, suffix: str) -> None:
    found, result = cited(guideline(name, suffix))
    headings = _markdown_headings(guideline(name, ".md"))
    grounded = [item for item in result.checklist if item.source is not None]
    assert len(grounded) >= 10
    with_section = 0
    for item in grounded:
        source = item.source
        assert source is not None and source.page is None
        assert found.text[source.start : source.end] == source.quote
        if source.section:
            with_section += 1
            # Each heading of the path is a heading of the source Markdown, and the quote
            # comes after the innermost one in the extracted text.
            assert {_joined(h) for h in source.section} <= headings, source.section
            assert found.text.rfind(source.section[-1], 0, source.start) >= 0
    assert with_section >= 0.9 * len(grounded)


def test_result_document_is_the_documents_metadata() -> None:
    path = guideline("nist-sp800-63b-authentication", ".docx")
    found, result = cited(path)
    document = result.to_status()["document"]
    data = path.read_bytes()
    import hashlib

    assert document == {
        "media_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "pages": None,
        "characters": len(found.text),
        "extractor": found.info.extractor if found.info else None,
        "extractor_version": found.info.extractor_version if found.info else None,
        "warnings": [],
    }


def test_inline_text_has_no_document_and_no_citations() -> None:
    found = read_input({"guidelineText": "Staff must wash their hands."}, settings_for(None), None)
    assert found.document is None and found.info is None
    settings = settings_for(None)
    provider = make_provider(settings)
    result = with_citations(run_chain(found.text, settings, provider), None, None)
    status = result.to_status()
    assert "document" not in status
    assert set(status["checklist"][0]["source"]) == {"quote", "start", "end", "match"}


def test_a_text_file_is_cleaned_like_an_upload(tmp_path: Path) -> None:
    path = tmp_path / "guideline"
    path.write_bytes("Staff must wash hands \u00e2\u0084\u00a2 daily.\n".encode())
    found = job_input(path)
    assert found.text == "Staff must wash hands \u2122 daily.\n"
    assert found.info is not None and [w.kind for w in found.info.warnings] == ["mojibake"]


def assert_final(error: ChainError, reason: FailureReason) -> None:
    assert error.reason == reason
    assert not error.retryable and error.exit_code == RunnerExit.DO_NOT_RETRY
    assert error.to_status()["reason"] == reason.value


def test_a_scan_fails_no_text_layer_and_says_what_to_do() -> None:
    error = failure(SCANNED_PDF)
    assert_final(error, FailureReason.NO_TEXT_LAYER)
    assert "OCR" in error.message


def test_a_truncated_pdf_fails_document_unreadable(tmp_path: Path) -> None:
    data = PDFS[0].read_bytes()
    path = tmp_path / "guideline"
    path.write_bytes(data[: len(data) // 3])
    error = failure(path)
    assert_final(error, FailureReason.DOCUMENT_UNREADABLE)
    assert "opens in a reader" in error.message


def test_over_the_settings_limits_fails_document_too_long() -> None:
    path = PDFS[0]
    pages = len(PdfReader(path).pages)
    error = failure(path, max_document_pages=pages - 1)
    assert_final(error, FailureReason.DOCUMENT_TOO_LONG)
    assert f"{pages:,} pages" in error.message and "Split the document" in error.message
    error = failure(guideline("nist-sp800-63b-authentication", ".html"), max_document_chars=10_000)
    assert_final(error, FailureReason.DOCUMENT_TOO_LONG)
    assert "10,000 characters" in error.message
    assert job_input(path, max_document_pages=pages).info is not None


def test_a_crash_inside_extraction_is_document_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(data: bytes, limits: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    # A parser bug on hostile input (not one of the errors extraction names): the job fails
    # for good, never a retry loop.
    monkeypatch.setattr(runner_input.documents, "extract", crash)
    path = tmp_path / "guideline"
    path.write_bytes(b"%PDF-1.7\n")
    assert_final(failure(path), FailureReason.DOCUMENT_UNREADABLE)


def test_a_missing_key_says_which_one(tmp_path: Path) -> None:
    error = failure(tmp_path / "absent")
    assert error.reason == FailureReason.INVALID_INPUT and not error.retryable
    assert "ConfigMap 'g', key 'doc'" in error.message and "does not exist" in error.message


def test_a_document_ref_without_the_api_is_invalid_input() -> None:
    spec = {"documentRef": {"id": "x", "sha256": "0" * 64, "mediaType": "text/plain", "bytes": 1}}
    with pytest.raises(ChainError) as raised:
        read_input(spec, settings_for(None), None)
    assert raised.value.reason == FailureReason.INVALID_INPUT and not raised.value.retryable
    assert "runner_api_url" in raised.value.message


# --- status.result within etcd's object limit ------------------------------------------


def test_a_result_over_the_bound_loses_uncovered_passages_first_then_items() -> None:
    # A checklist capped well below the guideline's obligations leaves some uncovered.
    _, result = cited(PDFS[0], max_checklist_items=100)
    assert len(result.quality.uncovered) >= 4
    full = json_bytes(result.to_status())
    uncovered = json_bytes([p.model_dump() for p in result.quality.uncovered])
    assert fit(result, full) is result  # fits: unchanged
    # Room for everything but half the uncovered passages: only those go.
    some = fit(result, full - uncovered // 2)
    assert json_bytes(some.to_status()) <= full - uncovered // 2
    assert some.checklist == result.checklist and some.needs_review == result.needs_review
    assert 0 < some.quality.uncovered_omitted < len(result.quality.uncovered)
    assert some.quality.uncovered == result.quality.uncovered[: -some.quality.uncovered_omitted]
    # Less room than the checklist takes: items are cut from the end, and said so.
    bound = full // 3
    small = fit(result, bound)
    assert json_bytes(small.to_status()) <= bound
    assert small.quality.uncovered == [] and small.quality.uncovered_omitted == len(
        result.quality.uncovered
    )
    cut = len(result.checklist) - len(small.checklist)
    assert cut > 0 and small.quality.capped is not None and small.quality.capped.result_bytes == cut
    assert small.checklist == result.checklist[: len(small.checklist)]
    assert all(i < len(small.checklist) for group in small.quality.duplicates for i in group)
    assert small.needs_review and f"{cut} of {len(result.checklist)}" in small.review.reasons[-1]


def test_the_room_for_the_result_is_what_the_object_leaves_under_etcds_limit() -> None:
    small = {"metadata": {"name": "gj-1"}, "spec": {"documentRef": {"id": "x"}}, "status": {}}
    assert room_for_result(small, 1_048_576) == 1_048_576
    # An inline 100,000-character text of 4-byte characters, twice (kopf keeps a copy of
    # the spec in an annotation): 800 KB of the 1.5 MiB are taken.
    text = "\U0001f600" * 100_000
    big = {
        "metadata": {"annotations": {"kopf.zalando.org/last-handled-configuration": text}},
        "spec": {"guidelineText": text},
        "status": {"result": {"summary": "x" * 10**6}},  # the result itself does not count
    }
    room = room_for_result(big, 1_048_576)
    assert room < 1_048_576 and room + json_bytes({**big, "status": {}}) < 1_572_864


def test_text_declared_plain_is_taken_as_written_whatever_it_looks_like() -> None:
    from guideline_runner import documents

    html = "<html><body><h1>Hands</h1><p>Staff must wash hands.</p></body></html>\n"
    assert documents.extract(html.encode()).text.startswith("Hands")  # sniffed: HTML
    plain = documents.extract(html.encode(), plain_text=True)
    assert plain.text == html and plain.media_type == "text/plain" and plain.sections == []


@pytest.mark.parametrize("content", [b"", b" \n\t \n", b"\x89PNG\r\n\x1a\n" + b"\0" * 64])
def test_an_empty_blank_or_unsupported_file_is_document_unreadable(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "guideline"
    path.write_bytes(content)
    error = failure(path)
    assert_final(error, FailureReason.DOCUMENT_UNREADABLE)
    assert error.message[:1].isupper() and error.message.endswith(".")

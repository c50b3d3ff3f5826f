"""The real test guidelines (tests/data/guidelines, see PROVENANCE.md) and the independent
tools the extraction is checked against: poppler's pdftotext and pandoc."""

from __future__ import annotations

import difflib
import io
import re
import subprocess
import zipfile
from pathlib import Path

GUIDELINES = Path(__file__).resolve().parent.parent / "data" / "guidelines"
NAMES = (
    "federal-plain-language-guidelines",
    "nist-sp800-63a-identity-proofing",
    "nist-sp800-63b-authentication",
)
PAGE_LABELLED_PDF = GUIDELINES / "nist-sp800-63a-identity-proofing-page-labels.pdf"
SCANNED_PDF = GUIDELINES / "nist-sp800-63b-authentication-scanned.pdf"

_WORD = re.compile(r"[\w']+")


def guideline(name: str, suffix: str) -> Path:
    """A test guideline in one format (`.md`, `.pdf`, `.docx`, `.html`)."""
    return GUIDELINES / f"{name}{suffix}"


def words(text: str) -> list[str]:
    """The text's words, case-folded: what two extractions of one document must share
    whatever their line breaks, hyphenation and punctuation."""
    return _WORD.findall(text.casefold().replace("\u2019", "'"))


def similarity(a: list[str], b: list[str]) -> float:
    """difflib's ratio of two word sequences (1.0: the same words in the same order)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def pdftotext(path: Path, first: int | None = None, last: int | None = None) -> str:
    """poppler's text of a PDF (or of pages first..last, 1-based)."""
    pages = []
    if first is not None:
        pages += ["-f", str(first)]
    if last is not None:
        pages += ["-l", str(last)]
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", *pages, str(path), "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def pandoc_plain(markdown: Path) -> str:
    """pandoc's plain-text rendering of a Markdown file: the words a reader sees."""
    return subprocess.run(
        ["pandoc", "-f", "markdown", "-t", "plain", "--wrap=none", str(markdown)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()

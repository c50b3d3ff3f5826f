"""DOCX text with mammoth (BSD-2-Clause; maps Word's heading styles to <h1>-<h6>) to HTML,
then the HTML path, so headings become sections the same way. The zip is checked against
decompression bombs before mammoth opens it."""

from __future__ import annotations

import io
import zipfile
from importlib.metadata import version

import mammoth
import mammoth.images
from guideline_core.documents.sniff import MediaType

from .html import EXTRACTOR_VERSION as HTML_EXTRACTOR_VERSION
from .html import extract_html
from .model import DocumentError, DocumentUnreadable, ExtractedDocument, ExtractionLimits

EXTRACTOR = "mammoth+selectolax"
EXTRACTOR_VERSION = f"{version('mammoth')}+{HTML_EXTRACTOR_VERSION}"
_MAX_MEMBERS = 10_000


def extract_docx(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    """The DOCX's text, a paragraph per block, a section per heading."""
    check_zip_limits(data, limits)
    try:
        # Images are left out (not read at all): mammoth would inline them as base64.
        result = mammoth.convert_to_html(
            io.BytesIO(data), convert_image=mammoth.images.img_element(lambda image: {})
        )
    except DocumentError:
        raise
    except Exception as error:  # any parser failure on untrusted input
        raise DocumentUnreadable(
            f"the DOCX cannot be read ({type(error).__name__}: {error})"
        ) from None
    return extract_html(
        result.value,
        limits,
        media_type=MediaType.DOCX,
        extractor=EXTRACTOR,
        extractor_version=EXTRACTOR_VERSION,
    )


def check_zip_limits(data: bytes, limits: ExtractionLimits) -> None:
    """Refuse a zip whose members would inflate past the caps, before inflating any. The
    declared sizes are binding: Python's zipfile stops at a member's declared size (and fails
    its CRC check) however much more its compressed data would inflate to."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
        raise DocumentUnreadable(f"the DOCX is not a readable zip archive ({error})") from None
    if len(members) > _MAX_MEMBERS:
        raise DocumentUnreadable(f"the DOCX has {len(members):,} parts; a Word file has far fewer")
    total = 0
    for member in members:
        if member.file_size > limits.max_docx_member_bytes:
            raise DocumentUnreadable(
                f"the DOCX part {member.filename} inflates to {member.file_size:,} bytes "
                f"(at most {limits.max_docx_member_bytes:,}): a decompression bomb?"
            )
        total += member.file_size
    if total > limits.max_docx_total_bytes:
        raise DocumentUnreadable(
            f"the DOCX inflates to {total:,} bytes (at most {limits.max_docx_total_bytes:,}): "
            "a decompression bomb?"
        )

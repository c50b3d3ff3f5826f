"""Multipart uploads: the caps of their bodies, and what an uploaded file is (its size,
SHA-256 and type told by its content). The API never parses a document: the runner pod
does (docs/documents.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO

from guideline_core.documents.sniff import MediaType, UnsupportedDocumentError, sniff_file
from guideline_core.settings import ApiSettings

from guideline_api.http.errors import ApiError, Reason
from guideline_api.http.limits import UploadCap

# Room for the form fields around a single file: at most MAX_FIELDS fields of
# MAX_FIELD_BYTES each, and the parts' headers.
FORM_SLACK_BYTES = 1024 * 1024
MAX_FIELDS = 16
MAX_FIELD_BYTES = 32 * 1024
_READ = 1024 * 1024
TEXT_TYPES = frozenset({MediaType.TEXT, MediaType.MARKDOWN})
SINGLE_UPLOAD_PATHS = frozenset({"/jobs", "/jobs/estimate"})
BATCH_UPLOAD_PATH = "/jobs/batch"


@dataclass(frozen=True)
class Upload:
    """One uploaded file, spooled (to disk past 1 MiB) by the multipart parser."""

    file: BinaryIO
    filename: str | None
    media_type: MediaType
    encoding: str | None
    bytes: int
    sha256: str

    @property
    def is_text(self) -> bool:
        """Plain text or Markdown: the API can read it as text (estimate)."""
        return self.media_type in TEXT_TYPES


def upload_cap(settings: ApiSettings, path: str) -> UploadCap | None:
    """The cap of a multipart body sent to `path` (None: not an upload path)."""
    path = path.removeprefix("/v1").rstrip("/") or "/"
    if path in SINGLE_UPLOAD_PATHS:
        return UploadCap(
            settings.max_document_bytes + FORM_SLACK_BYTES,
            Reason.DOCUMENT_TOO_LARGE,
            f"{settings.max_document_bytes} bytes per document (max_document_bytes), and "
            f"{FORM_SLACK_BYTES} bytes of form fields",
        )
    if path == BATCH_UPLOAD_PATH:
        return UploadCap(
            settings.max_upload_bytes,
            Reason.BODY_TOO_LARGE,
            f"{settings.max_upload_bytes} bytes for a multipart batch (max_upload_bytes)",
        )
    return None


def inspect(file: BinaryIO, filename: str | None, max_bytes: int) -> Upload:
    """Size, SHA-256 and type of an uploaded file, read in 1 MiB pieces: 413
    `document_too_large` past `max_bytes`, 415 `unsupported_media_type` (saying what it
    is) for anything but PDF, DOCX, HTML, Markdown and plain text."""
    named = f" {filename!r}" if filename else ""
    file.seek(0)
    digest = hashlib.sha256()
    size = 0
    while piece := file.read(_READ):
        size += len(piece)
        if size > max_bytes:
            raise ApiError(
                413,
                Reason.DOCUMENT_TOO_LARGE,
                f"the document{named} is larger than {max_bytes} bytes (max_document_bytes)",
            )
        digest.update(piece)
    try:
        sniffed = sniff_file(file)
    except UnsupportedDocumentError as exc:
        raise ApiError(
            415,
            Reason.UNSUPPORTED_MEDIA_TYPE,
            f"the document{named} is not PDF, DOCX, HTML, Markdown or plain text: {exc}",
        ) from None
    return Upload(file, filename, sniffed.media_type, sniffed.encoding, size, digest.hexdigest())


def read_text(upload: Upload, max_chars: int) -> str:
    """The text of a plain-text or Markdown upload (its encoding as sniffed); 413
    `text_too_long` past `max_chars`."""
    assert upload.encoding is not None
    # A UTF-8 or UTF-16 character takes at most 4 bytes: more bytes than that is too long
    # for sure, and is not decoded at all.
    if upload.bytes > 4 * max_chars + 4:
        raise ApiError(
            413,
            Reason.TEXT_TOO_LONG,
            f"the document's text has more than {max_chars} characters (the limit)",
        )
    upload.file.seek(0)
    text = upload.file.read().decode(upload.encoding)
    upload.file.seek(0)
    if len(text) > max_chars:
        raise ApiError(
            413,
            Reason.TEXT_TOO_LONG,
            f"the document's text has {len(text)} characters; the limit is {max_chars}",
        )
    return text

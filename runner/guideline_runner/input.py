"""The job's text, from whichever input its spec names (docs/contracts.md, "Inputs"):

- `guidelineText`: the inline text, as it is (the CRD has checked it);
- `guidelineTextFrom`: the bytes of the one ConfigMap or Secret key the operator mounted
  (`GUIDELINE_INPUT_FILE`), extracted like an upload;
- `documentRef`: the document fetched from the API (`api_client`), its SHA-256 checked
  against the spec, then extracted.

Extraction (`documents.extract`, with hygiene) runs under the settings' page and character
limits. A document that cannot become text fails the job for good (exit 42) with its reason
(`no_text_layer`, `document_unreadable`, `document_too_long`); a crash of a parser is
`document_unreadable` too, never a retry loop."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guideline_core.resource import FailureReason
from guideline_core.settings import RunnerSettings

from guideline_runner import documents
from guideline_runner.api_client import RunnerApi
from guideline_runner.errors import ChainError
from guideline_runner.models import DocumentInfo, DocumentWarningInfo

log = logging.getLogger(__name__)

# What a user can do about each failure, after the extractor's own words (which say it
# already for a PDF without a text layer: run OCR on it first, or submit the text).
_ADVICE = {
    "no_text_layer": "",
    "document_unreadable": "Check that the file opens in a reader, is not encrypted, and is "
    "a PDF, DOCX, HTML, Markdown or UTF-8 text file.",
    "document_too_long": "Split the document and submit each part as its own job.",
}


def _sentence(fragment: str) -> str:
    fragment = fragment.strip().rstrip(".")
    return f"{fragment[:1].upper()}{fragment[1:]}." if fragment else ""


@dataclass(frozen=True)
class JobInput:
    """The text the chain runs on and, when it was extracted from a document, the
    document (for citations) and its metadata (`result.document`)."""

    text: str
    document: documents.ExtractedDocument | None = None
    info: DocumentInfo | None = None
    source: str = "guidelineText"  # which spec field it came from


def limits_of(settings: RunnerSettings) -> documents.ExtractionLimits:
    """The extraction limits of the runner's settings."""
    return documents.ExtractionLimits(
        max_pages=settings.max_document_pages, max_characters=settings.max_document_chars
    )


def _invalid(message: str) -> ChainError:
    return ChainError(FailureReason.INVALID_INPUT, message, retryable=False)


def extract(data: bytes, settings: RunnerSettings, *, plain_text: bool = False) -> JobInput:
    """`data` as a job's text: extracted, cleaned, with its metadata (`plain_text`: a text
    the API stored as text/plain, taken as written whatever it looks like)."""
    try:
        extracted = documents.extract(data, limits_of(settings), plain_text=plain_text)
    except documents.DocumentError as error:
        reason = FailureReason(error.reason)
        message = f"{_sentence(str(error))} {_ADVICE[reason.value]}".strip()
        raise ChainError(reason, message, retryable=False) from None
    except Exception as exc:  # a parser's crash on hostile input: the document's fault
        log.exception("extraction crashed")
        raise ChainError(
            FailureReason.DOCUMENT_UNREADABLE,
            f"The document could not be read ({type(exc).__name__}). "
            f"{_ADVICE['document_unreadable']}",
            retryable=False,
        ) from None
    info = DocumentInfo(
        media_type=str(extracted.media_type),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        pages=len(extracted.pages) or None,
        characters=len(extracted.text),
        extractor=extracted.extractor,
        extractor_version=extracted.extractor_version,
        warnings=[DocumentWarningInfo(**w.as_dict()) for w in extracted.warnings],
    )
    if not extracted.text.strip():
        raise ChainError(
            FailureReason.DOCUMENT_UNREADABLE,
            "The document has no text. " + _ADVICE["document_unreadable"],
            retryable=False,
        )
    return JobInput(text=extracted.text, document=extracted, info=info)


def _read_file(path: str | None, spec: dict[str, Any]) -> bytes:
    ref = spec.get("guidelineTextFrom") or {}
    kind = "ConfigMap" if "configMapKeyRef" in ref else "Secret"
    key_ref = ref.get("configMapKeyRef") or ref.get("secretKeyRef") or {}
    named = f"{kind} {key_ref.get('name')!r}, key {key_ref.get('key')!r}"
    if not path:
        raise _invalid(f"spec.guidelineTextFrom is set but {named} is not mounted")
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise _invalid(
            f"{named} (spec.guidelineTextFrom) does not exist in the job's namespace"
        ) from None
    except OSError as exc:
        raise _invalid(f"{named} could not be read: {exc.strerror or exc}") from None


def _fetch(spec: dict[str, Any], settings: RunnerSettings, api: RunnerApi | None) -> bytes:
    ref = spec["documentRef"]
    if api is None:
        raise _invalid(
            "spec.documentRef needs the API, and the runner has no API URL "
            "(operator setting runner_api_url)"
        )
    data = api.document(int(ref["bytes"]))
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref["sha256"] or len(data) != int(ref["bytes"]):
        raise _invalid(
            f"The document the API sent ({len(data)} bytes, sha256 {digest}) is not the one "
            f"spec.documentRef names ({ref['bytes']} bytes, sha256 {ref['sha256']})"
        )
    return data


def read_input(spec: dict[str, Any], settings: RunnerSettings, api: RunnerApi | None) -> JobInput:
    """The job's text from its spec's one input; ChainError when there is none to use."""
    text = spec.get("guidelineText")
    if isinstance(text, str):
        return JobInput(text=text)
    if spec.get("guidelineTextFrom"):
        found = extract(_read_file(settings.input_file, spec), settings)
        return JobInput(found.text, found.document, found.info, "guidelineTextFrom")
    if spec.get("documentRef"):
        media_type = str(spec["documentRef"].get("mediaType") or "")
        plain = media_type.split(";")[0].strip().lower() == "text/plain"
        found = extract(_fetch(spec, settings, api), settings, plain_text=plain)
        return JobInput(found.text, found.document, found.info, "documentRef")
    raise _invalid(
        "The GuidelineJob has none of spec.guidelineText, guidelineTextFrom and documentRef"
    )

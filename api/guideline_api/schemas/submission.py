"""What a client submits for one job (a JSON text or an upload's form fields), and the
input-hygiene rules its fields follow."""

from __future__ import annotations

import functools
import re
from typing import Literal

from guideline_core.documents.hygiene import CleanText, TextWarning, clean_text
from guideline_core.resource import MAX_MODEL_CHARS, MAX_RETRIES_LIMIT, MAX_TITLE_CHARS
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from guideline_api.webhooks.targets import MAX_URL_CHARS, TargetRefusedError, check_form

CONTROL_RULE = (
    "Text must be valid Unicode sent as UTF-8. guideline_text is cleaned, not refused: put in "
    "NFC, mojibake (UTF-8 read as Latin-1/Windows-1252) repaired, and stray control "
    "characters (U+0000-U+001F and U+007F-U+009F other than tab, line feed and carriage "
    "return; unpaired surrogates) replaced: form feed and vertical tab by a line feed, the "
    "rest by U+FFFD; each kind of repair is counted in the job's `document.warnings`. A text "
    "with nothing left but whitespace and U+FFFD is refused (422 `validation_error`, type "
    "`blank`). title is not cleaned: a control character or unpaired surrogate in it is "
    "refused (422 `control_characters`)."
)
_READABLE = re.compile(r"[^\s\ufffd]")
_LINE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"


def _check_chars(value: str, forbidden: re.Pattern[str]) -> str:
    m = forbidden.search(value)
    if m:
        char = m.group()
        kind = "unpaired surrogate" if "\ud800" <= char <= "\udfff" else "control character"
        raise PydanticCustomError(
            "control_characters",
            "contains {kind} U+{code} at index {index}; " + CONTROL_RULE,
            {"kind": kind, "code": f"{ord(char):04X}", "index": m.start()},
        )
    return value


@functools.lru_cache(maxsize=4)
def _cleaned(text: str) -> CleanText:
    """`clean_text`, remembered for the few texts being validated (the field validator
    checks the cleaned text, the model validator keeps it)."""
    return clean_text(text)


def _readable(text: str) -> bool:
    return _READABLE.search(text) is not None


UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class ReviewThresholds(BaseModel):
    """This job's own review thresholds (each default: the runner's setting)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    min_grounding: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Needs review when fewer items than this share are grounded (default "
        "GUIDELINE_REVIEW_MIN_GROUNDING, 1.0: every item).",
    )
    min_coverage: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Needs review when fewer obligation sentences than this share are "
        "covered by an item's source (default GUIDELINE_REVIEW_MIN_COVERAGE, 0.8).",
    )


class SubmissionFields(BaseModel):
    """What a submission says besides its guideline (JSON body fields, or the form fields
    of a multipart upload)."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
    )

    title: str | None = Field(
        None, max_length=MAX_TITLE_CHARS, description="Optional label shown in listings."
    )
    model: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_MODEL_CHARS,
        pattern=MODEL_PATTERN,
        description="LLM model (e.g. gpt-4o-mini); default: the runner's configured model.",
    )
    provider: Literal["openai", "extractive"] | None = Field(
        None,
        description="`openai` (any OpenAI-compatible endpoint) or `extractive` (offline, "
        "deterministic, no LLM; labelled as such in the result). Default: the runner's.",
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        le=MAX_RETRIES_LIMIT,
        description="Pod retries of this job (the Job's backoffLimit); default: operator's.",
    )
    supersedes: str | None = Field(
        None,
        pattern=UUID_PATTERN,
        description="event_id of the job whose guideline this one replaces (422 if there is "
        "no such job): the result then has `changes` against that job's checklist.",
    )
    review: ReviewThresholds | None = Field(
        None, description="Thresholds of the review gate for this job."
    )
    callback_url: str | None = Field(
        None,
        max_length=MAX_URL_CHARS,
        description="Webhook: on every terminal state (COMPLETED, FAILED, CANCELLED; again "
        "after a retry) the job's JSON is POSTed here, signed as Standard Webhooks says "
        "(`webhook-id`, `webhook-timestamp`, `webhook-signature`). An http(s) URL whose host "
        "resolves only to public addresses (422 `callback_url_refused` otherwise). Default: "
        "the tenant's `callback_url`, if it has one.",
        examples=["https://hooks.example.com/guidelines"],
    )

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        return None if value is None else _check_chars(value, _LINE_FORBIDDEN)

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_form(value)
            except TargetRefusedError as exc:
                raise PydanticCustomError(
                    "callback_url", "{problem}", {"problem": str(exc)}
                ) from None
        return value


class SubmitJob(SubmissionFields):
    """A guideline to summarize and turn into a checklist (sent as text)."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "guideline_text": "Staff must wash hands before every patient contact.\n"
                    "Gloves should be changed between patients.",
                    "title": "Hand hygiene",
                }
            ]
        },
    )

    guideline_text: str = Field(
        description="The guideline as plain text: at least one non-blank character, at most "
        "`max_guideline_chars` characters (Unicode code points; default 2,000,000; longer "
        "is 413 `text_too_long`). " + CONTROL_RULE,
    )
    _submitted_text: str = PrivateAttr("")
    _text_warnings: list[TextWarning] = PrivateAttr(default_factory=list)

    @field_validator("guideline_text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("blank", "must not be empty or only whitespace")
        if not _readable(_cleaned(value).text):
            raise PydanticCustomError(
                "blank",
                "has nothing to read once cleaned: only whitespace and control characters "
                "(or U+FFFD)",
            )
        return value

    @model_validator(mode="after")
    def _clean_text(self) -> SubmitJob:
        cleaned = _cleaned(self.guideline_text)
        self._submitted_text = self.guideline_text
        self._text_warnings = cleaned.warnings
        self.guideline_text = cleaned.text
        return self

    @property
    def submitted_text(self) -> str:
        """guideline_text as the client sent it (what the Idempotency-Key's hash covers)."""
        return self._submitted_text or self.guideline_text

    @property
    def text_warnings(self) -> list[TextWarning]:
        """The repairs `clean_text` made to guideline_text (offsets into the submitted text)."""
        return self._text_warnings


class SubmitDocument(SubmissionFields):
    """The form fields of a multipart upload (`file` is the guideline): as `SubmitJob`
    without `guideline_text`."""

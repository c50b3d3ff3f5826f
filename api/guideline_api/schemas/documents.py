"""A job's document as the API shows it: what was accepted and the hygiene's repairs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_serializer


class DocumentWarning(BaseModel):
    """One kind of repair made to the submitted text."""

    kind: str = Field(
        description="`mojibake` (UTF-8 read as Latin-1/Windows-1252, repaired with ftfy), "
        "`control_characters` (a stray C0/C1 control or unpaired surrogate replaced) or "
        "`unicode_normalization` (put in NFC)."
    )
    count: int = Field(description="How many places were repaired.")
    first_offset: int = Field(
        description="Offset (code points) of the first one in the text as submitted."
    )


class DocumentInfo(BaseModel):
    """The job's document: what the API knew when it accepted it, completed by the runner's
    extraction (`pages`, `characters`, `extractor`, ... of an upload)."""

    media_type: str = Field(
        description="`text/plain` for a JSON `guideline_text`; for an upload, the type told "
        "by its content: `application/pdf`, `application/vnd.openxmlformats-officedocument."
        "wordprocessingml.document`, `text/html`, `text/markdown` or `text/plain`."
    )
    extractor: str | None = Field(
        None,
        description="How the text was obtained: `json` (sent as text); for an upload, the "
        "runner's extractor once it has read it (absent before).",
    )
    extractor_version: str | None = Field(None, description="The extractor's version.")
    bytes: int = Field(
        description="Size: of the cleaned text in UTF-8 (JSON), of the file (upload)."
    )
    sha256: str = Field(description="SHA-256 (hex) of those bytes.")
    pages: int | None = Field(None, description="Pages (PDF), once extracted.")
    characters: int | None = Field(
        None, description="Code points of the (extracted, cleaned) text; absent before."
    )
    warnings: list[DocumentWarning] = Field(
        default_factory=list,
        description="Each kind of repair the text hygiene made (empty: none was needed).",
    )

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: Any):  # type: ignore[no-untyped-def]  # see jobs.py
        return {
            k: v
            for k, v in handler(self).items()
            if v is not None or k not in ("extractor", "extractor_version", "pages", "characters")
        }

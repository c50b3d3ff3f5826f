"""What a job's runner pod reports to the API (the runner endpoints' bodies)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from guideline_api.schemas.documents import DocumentWarning


class RunnerDocument(BaseModel):
    """What the runner's extraction found of a job's document (`result.document`)."""

    model_config = ConfigDict(extra="allow")

    media_type: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    pages: int | None = Field(None, ge=0)
    characters: int = Field(ge=0)
    extractor: str
    extractor_version: str | None = None
    warnings: list[DocumentWarning] = Field(default_factory=list)


class RunnerText(BaseModel):
    """`PUT /v1/runner/jobs/{event_id}/text`: the job's extracted text and its document."""

    text: str = Field(description="The extracted (and cleaned) text: the job's text.")
    document: RunnerDocument

"""What `GET /jobs/{event_id}/export` does: read the caller's COMPLETED job (as `GET
/jobs/{event_id}` shows it, `result.changes` included), and lay it out in one format."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from guideline_core import db
from guideline_core.resource import Phase

from guideline_api.auth import Principal
from guideline_api.context import Context
from guideline_api.exports import Format, content_disposition
from guideline_api.exports.provenance import build, text_sha256
from guideline_api.http.errors import ApiError, Reason
from guideline_api.service.access import transaction
from guideline_api.service.reads import get
from guideline_api.service.views import to_view


@dataclass(frozen=True)
class Rendered:
    """An export ready to send."""

    body: bytes
    content_type: str
    disposition: str


def now() -> str:
    """The generation time of an export (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def export(ctx: Context, principal: Principal, event_id: uuid.UUID, fmt: Format) -> Rendered:
    """The job in `fmt`: 404 if the caller may not see it, 409 unless it is COMPLETED."""
    detail = get(ctx, principal, event_id, frozenset())
    row = detail.row
    if row["status"] != Phase.COMPLETED:
        raise ApiError(
            409,
            Reason.JOB_NOT_COMPLETED,
            f"job {event_id} is {row['status']}; only a COMPLETED job has a result to export",
        )
    job = to_view(row).model_dump(mode="json")
    digest = None
    if not ((job.get("result") or {}).get("document") or {}).get("sha256"):
        with transaction(ctx) as conn:  # the same 503 mapping as every read
            text = db.get_guideline_text(conn, event_id)
        digest = text_sha256(text or "")
    doc = build(job, digest, now())
    return Rendered(
        body=fmt.render(doc),
        content_type=fmt.content_type,
        disposition=content_disposition(job.get("title") or "", str(event_id), fmt.extension),
    )

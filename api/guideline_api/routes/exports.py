"""`GET /jobs/{event_id}/export`: a COMPLETED job's result as FHIR, OSCAL, CSV, XLSX,
Markdown or printable HTML (guideline_api.exports). HTTP in, a service call, HTTP out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from guideline_api.deps import CtxDep, CurrentPrincipal
from guideline_api.exports import FORMATS, OSCAL_PROFILE, Format, from_accept, only_wildcards
from guideline_api.http.errors import ApiError, Reason
from guideline_api.openapi import ALWAYS, INVALID_EVENT_ID, NOT_FOUND, problem
from guideline_api.service import exports
from guideline_api.service.access import parse_event_id

router = APIRouter(prefix="/jobs", tags=["exports"])

NAMES = "|".join(FORMATS)
DESCRIPTION = (
    "The result of a COMPLETED job in a format another system reads, computed from the "
    "stored result (no LLM call; the same result gives the same bytes apart from the "
    "generation time), with the job's provenance (event_id, title, document sha256, "
    "provider, model, prompt and service version, times, `needs_review` and its reasons) "
    "and, for a job that supersedes another, its changes. docs/exports.md maps each "
    "field.\n\n"
    "Choose the format with `?format=` (it wins over Accept) or with `Accept`:\n\n"
    "| format | media type | what |\n|---|---|---|\n"
    "| `fhir` | `application/fhir+json` | FHIR R4 Bundle: PlanDefinition (one action per "
    "item), Questionnaire (one boolean per item), DocumentReference |\n"
    f'| `oscal` | `application/json; profile="{OSCAL_PROFILE}"` | OSCAL 1.1.3 catalog: '
    "sections as groups, items as controls |\n"
    "| `csv` | `text/csv` | RFC 4180, UTF-8 with BOM: a header and one row per item |\n"
    "| `xlsx` | `application/vnd.openxmlformats-officedocument.spreadsheetml.sheet` | "
    "items, and the provenance on sheet 2 |\n"
    "| `md` | `text/markdown` | a `- [ ]` checklist with each quote |\n"
    "| `html` | `text/html` | a printable checklist |\n\n"
    "`Content-Disposition: attachment` names the file `<title slug>-<event_id prefix>.<ext>`."
)
JSON_OBJECT = {"schema": {"type": "object"}}
BINARY = {"schema": {"type": "string", "format": "binary"}}
TEXT = {"schema": {"type": "string"}}
CONTENT: dict[str, Any] = {
    "application/fhir+json": JSON_OBJECT,
    "application/json": JSON_OBJECT,
    "text/csv": TEXT,
    FORMATS["xlsx"].media_type: BINARY,
    "text/markdown": TEXT,
    "text/html": TEXT,
}
DISPOSITION = {
    "Content-Disposition": {
        "description": 'attachment; filename="<slug>-<event_id prefix>.<ext>"; '
        "filename*=UTF-8''<the same with the title's own letters>",
        "required": True,
        "schema": {"type": "string"},
    }
}


def choose(fmt: str | None, accept: str | None) -> Format:
    """The format asked for: `?format=`, else the Accept header's preference."""
    if fmt is not None:
        found = FORMATS.get(fmt.strip().lower())
        if found is None:
            raise ApiError(
                422,
                Reason.UNKNOWN_EXPORT_FORMAT,
                f"format {fmt[:40]!r} is not one of {NAMES}",
                details=[{"field": "format", "message": f"one of {NAMES}", "type": "enum"}],
            )
        return found
    if only_wildcards(accept):
        raise ApiError(
            422,
            Reason.UNKNOWN_EXPORT_FORMAT,
            f"choose a format: ?format={NAMES}, or an Accept media type of one",
        )
    found = from_accept(accept or "")
    if found is None:
        raise ApiError(
            406,
            Reason.NOT_ACCEPTABLE,
            f"Accept {accept[:120]!r} names no export format; use ?format={NAMES}",  # type: ignore[index]
        )
    return found


@router.get(
    "/{event_id}/export",
    summary="Export a result (FHIR, OSCAL, CSV, XLSX, Markdown, HTML)",
    description=DESCRIPTION,
    response_class=Response,
    responses={
        200: {"description": "The export.", "content": CONTENT, "headers": DISPOSITION},
        **ALWAYS,
        **NOT_FOUND,
        **problem(
            406,
            "No `?format=`, and the Accept header names none of the formats.",
            (Reason.NOT_ACCEPTABLE, "Accept 'image/png' names no export format; use ..."),
        ),
        **problem(
            409,
            "The job is not COMPLETED (yet): it has no result.",
            (Reason.JOB_NOT_COMPLETED, "job ... is PENDING; only a COMPLETED job has a result"),
        ),
        **problem(
            422,
            "The event_id is not a UUID, or the format is unknown or missing.",
            INVALID_EVENT_ID,
            (Reason.UNKNOWN_EXPORT_FORMAT, f"format 'pdf' is not one of {NAMES}"),
        ),
    },
)
async def export_job(
    request: Request,
    ctx: CtxDep,
    principal: CurrentPrincipal,
    event_id: str = Path(description="The job's event_id (a UUID)."),
    format: str | None = Query(
        None, description=f"One of {NAMES}; without it, the Accept header decides."
    ),
    accept: str | None = Header(None, include_in_schema=False),
) -> Response:
    """Export a COMPLETED job's result (see the description above)."""
    eid = parse_event_id(event_id)
    request.state.event_id = str(eid)
    fmt = choose(format, accept)
    rendered = await run_in_threadpool(exports.export, ctx, principal, eid, fmt)
    return Response(
        rendered.body,
        media_type=rendered.content_type,
        headers={"Content-Disposition": rendered.disposition},
    )

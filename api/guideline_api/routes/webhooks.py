"""The webhook the API sends, described in the OpenAPI document's top-level `webhooks`
(OpenAPI 3.1): what a receiver is POSTed, so that a receiver can be generated too. It is
documentation only: the API serves no such path."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from guideline_api.schemas.jobs import JobView

router = APIRouter(tags=["webhooks"])
VIEW = JobView.__name__


@router.post(
    "job-finished",
    summary="A job reached a terminal state",
    description=(
        "POSTed to the job's `callback_url` (or its tenant's) when it becomes COMPLETED, "
        "FAILED or CANCELLED, again after a retry's run ends. The body is the job as "
        "`GET /jobs/{event_id}` shows it. Signed as the Standard Webhooks specification "
        "says: verify `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256 of "
        '"{webhook-id}.{webhook-timestamp}.{body}">`, one per active secret of the tenant) '
        "with your `whsec_` secret, e.g. with the `standardwebhooks` package. Answer 2xx; "
        "anything else is retried with exponential backoff for up to 24 h under the same "
        "`webhook-id` (deduplicate on it)."
    ),
    status_code=204,
    responses={204: {"description": "Taken (any 2xx is)."}},
    # The job's schema as the responses have it (a body parameter would split JobView into
    # an input and an output schema across the whole document).
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{VIEW}"}}},
        }
    },
)
def job_finished(
    webhook_id: Annotated[
        str, Header(alias="webhook-id", description="The same on every retry: msg_<hex>.")
    ],
    webhook_timestamp: Annotated[
        str, Header(alias="webhook-timestamp", description="Unix seconds of this attempt.")
    ],
    webhook_signature: Annotated[
        str, Header(alias="webhook-signature", description="`v1,<base64>`, space-separated.")
    ],
) -> None:
    """Documentation of the webhook; never served."""

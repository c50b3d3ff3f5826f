"""The bound on input one tenant keeps in flight: the stored documents (uploads as they
came, JSON texts in UTF-8; a kubectl job's inline text) of its jobs not finished, or
finished within `cr_retention_seconds`. A submission that would take a tenant past
`tenant_max_inflight_text_bytes` is refused (429 `tenant_text_quota`). (The text no longer
travels in the GuidelineJob, which carries a reference: the bound now keeps one tenant from
filling PostgreSQL and the runners' queue, not etcd.)

A soft bound: two submissions of one tenant committing at the same moment may both pass,
so it can be passed by at most what they carry."""

from __future__ import annotations

from collections.abc import Sequence

from guideline_core import db
from guideline_core.settings import ApiSettings
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_api.http.errors import ApiError, Reason


def text_bytes(text: str) -> int:
    """The size of a guideline text as stored (UTF-8)."""
    return len(text.encode("utf-8"))


def check(conn: PgConnection, settings: ApiSettings, tenant: str, sizes: Sequence[int]) -> None:
    """429 if new inputs of `sizes` bytes would take `tenant` past its limit."""
    limit = settings.tenant_max_inflight_text_bytes
    if not limit or not sizes:
        return
    new = sum(sizes)
    held = db.tenant_text_bytes(conn, tenant, settings.cr_retention_seconds)
    if held + new > limit:
        raise ApiError(
            429,
            Reason.TENANT_TEXT_QUOTA,
            f"tenant {tenant} holds {held} bytes of guideline text in jobs not finished or "
            f"finished in the last {settings.cr_retention_seconds} s; {new} more would pass "
            f"its limit of {limit}; retry later",
            headers={"Retry-After": str(settings.backlog_retry_after_seconds)},
        )

"""Per-tenant figures over `jobs` (active counts, input bytes, spending, pending
queues) and the per-minute submission counter (`tenant_rate`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.db.rows import jsonb, one_row
from guideline_core.resource import TERMINAL_PHASES, Phase


def count_tenant_status(conn: PgConnection, tenant: str, status: Phase) -> int:
    """Number of one tenant's jobs in one status (served by the tenant/status index)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM jobs WHERE tenant = %s AND status = %s", (tenant, str(status))
        )
        return int(one_row(cur)[0])


def tenant_text_bytes(conn: PgConnection, tenant: str, finished_within_seconds: int) -> int:
    """Bytes of input in one tenant's jobs not finished, or finished within
    `finished_within_seconds` (the CR retention): its stored document's size for a job the
    API made, its text's UTF-8 size for one made by kubectl (octet_length reads a stored
    text's size without decompressing it)."""
    size = (
        "coalesce((SELECT d.bytes FROM documents d WHERE d.id = jobs.document_id), "
        "octet_length(guideline_text))"
    )
    with conn.cursor() as cur:
        cur.execute(
            f"""
            SELECT (SELECT coalesce(sum({size}), 0) FROM jobs
                     WHERE tenant = %(tenant)s AND status = ANY(%(active)s))
                 + (SELECT coalesce(sum({size}), 0) FROM jobs
                     WHERE tenant = %(tenant)s AND status = ANY(%(terminal)s)
                       AND completed_at > now() - make_interval(secs => %(seconds)s))
            """,
            {
                "tenant": tenant,
                "active": [p.value for p in Phase if not p.terminal],
                "terminal": [p.value for p in TERMINAL_PHASES],
                "seconds": finished_within_seconds,
            },
        )
        return int(one_row(cur)[0])


def tenant_spending(
    conn: PgConnection, tenant: str, since: datetime, currency: str
) -> tuple[float, float]:
    """What `tenant` spent in `currency`: the stored cost of its jobs completed since
    `since`, and the stored estimates of its jobs not finished (reserved)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT coalesce(sum((cost ->> 'amount')::numeric)
                              FILTER (WHERE completed_at >= %s AND cost ->> 'currency' = %s), 0),
                   coalesce(sum((estimated_cost ->> 'amount')::numeric)
                              FILTER (WHERE status <> ALL(%s)
                                        AND estimated_cost ->> 'currency' = %s), 0)
              FROM jobs
             WHERE tenant = %s AND (completed_at >= %s OR status <> ALL(%s))
            """,
            (
                since,
                currency,
                [p.value for p in TERMINAL_PHASES],
                currency,
                tenant,
                since,
                [p.value for p in TERMINAL_PHASES],
            ),
        )
        spent, reserved = one_row(cur)
    return float(spent), float(reserved)


def set_estimated_cost(conn: PgConnection, event_id: uuid.UUID, cost: Mapping[str, Any]) -> None:
    """Store a job's estimated cost ({amount, currency}), reserved against its tenant's
    budget until it finishes."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET estimated_cost = %s WHERE event_id = %s", (jsonb(cost), event_id)
        )


def pending_by_tenant(conn: PgConnection) -> dict[str, int]:
    """PENDING jobs of each tenant that has any (served by the tenant/status index)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT tenant, count(*) FROM jobs WHERE status = %s GROUP BY tenant",
            (str(Phase.PENDING),),
        )
        return {tenant: int(n) for tenant, n in cur.fetchall()}


def tenants_waiting(conn: PgConnection) -> int:
    """How many tenants have PENDING jobs (admission takes them in turn)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(DISTINCT tenant) FROM jobs WHERE status = %s", (str(Phase.PENDING),)
        )
        return int(one_row(cur)[0])


def count_submission(conn: PgConnection, tenant: str, count: int = 1) -> int:
    """Count `count` submissions of `tenant` in the current minute (one row per tenant and
    minute, so every API replica shares the figure); returns the minute's total. Rows
    of earlier minutes are removed on the way."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO tenant_rate (tenant, window_start, count)
            VALUES (%s, date_trunc('minute', now()), %s)
            ON CONFLICT (tenant, window_start) DO UPDATE SET count = tenant_rate.count + %s
            RETURNING count
            """,
            (tenant, count, count),
        )
        total = int(one_row(cur)[0])
        cur.execute(
            "DELETE FROM tenant_rate WHERE tenant = %s AND window_start < "
            "date_trunc('minute', now())",
            (tenant,),
        )
        return total


def refund_submission(conn: PgConnection, tenant: str, count: int) -> None:
    """Take back `count` requests counted in the tenant's current minute (work that was
    charged and then not done at the tenant's cost)."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE tenant_rate SET count = greatest(count - %s, 0) "
            "WHERE tenant = %s AND window_start = date_trunc('minute', now())",
            (count, tenant),
        )

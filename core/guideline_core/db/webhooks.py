"""The webhook tables (migration 0005): tenants' signing secrets and the delivery outbox.
Rows enter the outbox by a trigger on `jobs` (a terminal state of a job with a callback
URL); the API's delivery worker claims them here."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

import psycopg2.extras
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core.db.rows import one_row, select_all

# The Standard Webhooks secret format (`whsec_<base64 key>`), which the signer reads back.
SECRET_PREFIX = "whsec_"
DELIVERY_VIEW_COLUMNS = (
    "webhook_id, run, status, state, attempts, created_at, last_attempt_at, last_status, "
    "last_error, next_attempt_at, delivered_at"
)


# --------------------------------------------------------------------------- secrets


def new_secret() -> str:
    """A fresh signing secret: 32 random bytes, base64, prefixed `whsec_`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _lock_tenant(conn: PgConnection, tenant: str) -> None:
    """Serialize secret changes of one tenant (concurrent rotations, a first delivery)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('webhook-secret:' || %s))", (tenant,))


def purge_expired_secrets(conn: PgConnection, tenant: str | None = None) -> int:
    """Delete the secrets whose grace period has ended (of `tenant`, or of every tenant):
    an expired secret signs nothing and is not kept in plaintext. Returns how many."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM webhook_secrets WHERE expires_at <= now() "
            "AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)",
            {"tenant": tenant},
        )
        return cur.rowcount


def revoke_secrets(
    conn: PgConnection, tenant: str, *, secret_id: int | None = None, previous: bool = False
) -> int:
    """End secrets of `tenant` at once (deleted): the one numbered `secret_id`, or with
    `previous` every one but the current. Returns how many. A tenant left without a
    current secret gets a new one at its next delivery (or `create`)."""
    _lock_tenant(conn, tenant)
    with conn.cursor() as cur:
        if previous:
            cur.execute(
                "DELETE FROM webhook_secrets WHERE tenant = %s AND expires_at IS NOT NULL",
                (tenant,),
            )
        else:
            cur.execute(
                "DELETE FROM webhook_secrets WHERE tenant = %s AND id = %s", (tenant, secret_id)
            )
        return cur.rowcount


def active_secrets(conn: PgConnection, tenant: str) -> list[dict[str, Any]]:
    """The tenant's secrets that still sign (the current one last)."""
    return select_all(
        conn,
        "SELECT id, secret, created_at, expires_at FROM webhook_secrets "
        "WHERE tenant = %s AND (expires_at IS NULL OR expires_at > now()) ORDER BY id",
        (tenant,),
    )


def ensure_secret(conn: PgConnection, tenant: str) -> list[dict[str, Any]]:
    """The tenant's active secrets, after creating one if it has none (so a delivery is
    never unsigned; `guideline-api webhook-secret show` then tells it)."""
    found = active_secrets(conn, tenant)
    if found and found[-1]["expires_at"] is None:
        return found
    _lock_tenant(conn, tenant)
    found = active_secrets(conn, tenant)
    if not found or found[-1]["expires_at"] is not None:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO webhook_secrets (tenant, secret) VALUES (%s, %s)",
                (tenant, new_secret()),
            )
        found = active_secrets(conn, tenant)
    return found


def rotate_secret(conn: PgConnection, tenant: str, grace_seconds: float) -> dict[str, Any]:
    """A new current secret for `tenant`; the previous ones keep signing for
    `grace_seconds` (at most: one already due earlier keeps its earlier end). Expired
    secrets are deleted on the way. Returns the new secret's row."""
    _lock_tenant(conn, tenant)
    purge_expired_secrets(conn, tenant)
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "UPDATE webhook_secrets SET expires_at = now() + make_interval(secs => %s) "
            "WHERE tenant = %s AND expires_at IS NULL",
            (grace_seconds, tenant),
        )
        cur.execute(
            "INSERT INTO webhook_secrets (tenant, secret) VALUES (%s, %s) "
            "RETURNING id, secret, created_at, expires_at",
            (tenant, new_secret()),
        )
        return dict(one_row(cur))


# --------------------------------------------------------------------------- deliveries


def claim_deliveries(
    conn: PgConnection, limit: int, lease_seconds: float, per_tenant: int
) -> list[dict[str, Any]]:
    """Claim up to `limit` due deliveries for one attempt each: the attempt is counted and
    the row leased for `lease_seconds`. Fair across tenants: rows are taken round-robin by
    tenant (each tenant's oldest due first; a tenant with attempts in flight ranks behind
    one without), and a tenant with `per_tenant` attempts in flight (on any replica: leases
    not yet ended) gets none, so one tenant's slow receivers cannot hold every slot (while
    `per_tenant` is below the slots). The cost grows with the number of tenants with
    pending rows, not with the backlog (index probes per tenant, migration 0010). Claims
    are serialized (an advisory lock for the transaction) so that two replicas cannot both
    fill a tenant's last slot; SKIP LOCKED still leaves alone a row another transaction is
    recording. A replica that dies mid-attempt leaves the row to be taken again when the
    lease ends."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('webhook-claim'))")
        cur.execute(
            """
            WITH RECURSIVE tenants AS (
                -- The tenants with pending rows, one index probe each (a skip scan).
                (SELECT tenant FROM webhook_deliveries WHERE state = 'pending'
                  ORDER BY tenant LIMIT 1)
                UNION ALL
                SELECT (SELECT d.tenant FROM webhook_deliveries d
                         WHERE d.state = 'pending' AND d.tenant > t.tenant
                         ORDER BY d.tenant LIMIT 1)
                  FROM tenants t WHERE t.tenant IS NOT NULL),
            busy AS (
                SELECT tenant, count(*) AS n FROM webhook_deliveries
                 WHERE state = 'pending' AND leased_until > now()
                 GROUP BY tenant),
            chosen AS (
                SELECT due.webhook_id FROM tenants t
                  LEFT JOIN busy USING (tenant)
                 CROSS JOIN LATERAL (
                       SELECT d.webhook_id, d.next_attempt_at,
                              row_number() OVER (ORDER BY d.next_attempt_at) AS turn
                         FROM webhook_deliveries d
                        WHERE d.state = 'pending' AND d.tenant = t.tenant
                          AND d.next_attempt_at <= now()
                        ORDER BY d.next_attempt_at
                        LIMIT greatest(%(per_tenant)s - coalesce(busy.n, 0), 0)) AS due
                 WHERE t.tenant IS NOT NULL
                 -- A tenant's next row ranks behind those it already has in flight.
                 ORDER BY due.turn + coalesce(busy.n, 0), due.next_attempt_at
                 LIMIT %(limit)s)
            UPDATE webhook_deliveries
               SET attempts = attempts + 1,
                   next_attempt_at = now() + make_interval(secs => %(lease)s),
                   leased_until = now() + make_interval(secs => %(lease)s)
             WHERE webhook_id IN (
                   SELECT webhook_id FROM webhook_deliveries
                    WHERE webhook_id IN (SELECT webhook_id FROM chosen)
                      AND state = 'pending' AND next_attempt_at <= now()
                      FOR UPDATE SKIP LOCKED)
            RETURNING webhook_id, event_id, run, status, url, tenant, job, body, attempts,
                      created_at
            """,
            {"per_tenant": per_tenant, "limit": limit, "lease": lease_seconds},
        )
        return sorted(cur.fetchall(), key=lambda r: r["created_at"])


def renew_lease(conn: PgConnection, webhook_id: str, attempt: int, lease_seconds: float) -> bool:
    """Extend the lease of attempt number `attempt` to `lease_seconds` from now; False if
    the attempt no longer holds the row (its lease ran out and another attempt claimed
    it): it must then not be made."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => %s), "
            "leased_until = now() + make_interval(secs => %s) "
            "WHERE webhook_id = %s AND attempts = %s AND state = 'pending' RETURNING 1",
            (lease_seconds, lease_seconds, webhook_id, attempt),
        )
        return cur.fetchone() is not None


def release_claim(conn: PgConnection, webhook_id: str, attempt: int) -> None:
    """Undo the claim of attempt number `attempt`, not made: due now, not counted."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE webhook_deliveries SET attempts = attempts - 1, next_attempt_at = now(), "
            "leased_until = NULL "
            "WHERE webhook_id = %s AND attempts = %s AND state = 'pending'",
            (webhook_id, attempt),
        )


def set_body(conn: PgConnection, webhook_id: str, body: str) -> str:
    """Fix the body of a delivery at its first attempt; returns the body stored (an
    earlier attempt's, if one got there first)."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE webhook_deliveries SET body = coalesce(body, %s) WHERE webhook_id = %s "
            "RETURNING body",
            (body, webhook_id),
        )
        row = cur.fetchone()
        return row[0] if row else body


def finish_attempt(
    conn: PgConnection,
    webhook_id: str,
    attempt: int,
    *,
    status_code: int | None,
    error: str | None,
    retry_in: float,
    max_age_seconds: float,
) -> str | None:
    """Record the outcome of attempt number `attempt` (no error: delivered). A failed one
    is tried again in `retry_in` seconds, unless that is past `max_age_seconds` after the
    job finished: then the delivery is given up (`failed`). Returns the delivery's state
    now, or None if the attempt is no longer the row's latest (its lease ran out and
    another attempt was claimed): its outcome is then not written."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE webhook_deliveries
               SET state = CASE
                       WHEN %(ok)s THEN 'delivered'
                       WHEN created_at + make_interval(secs => %(max_age)s)
                            < now() + make_interval(secs => %(retry_in)s) THEN 'failed'
                       ELSE 'pending' END,
                   last_status = %(code)s, last_error = %(error)s, last_attempt_at = now(),
                   delivered_at = CASE WHEN %(ok)s THEN now() END,
                   leased_until = NULL,
                   next_attempt_at = CASE
                       WHEN %(ok)s THEN NULL
                       WHEN created_at + make_interval(secs => %(max_age)s)
                            < now() + make_interval(secs => %(retry_in)s) THEN NULL
                       ELSE now() + make_interval(secs => %(retry_in)s) END
             WHERE webhook_id = %(id)s AND attempts = %(attempt)s AND state = 'pending'
            RETURNING state
            """,
            {
                "ok": error is None,
                "max_age": max_age_seconds,
                "retry_in": retry_in,
                "code": status_code,
                "error": None if error is None else error[:500],
                "id": webhook_id,
                "attempt": attempt,
            },
        )
        row = cur.fetchone()
        return row[0] if row else None


def deliveries_of(conn: PgConnection, event_id: uuid.UUID) -> list[dict[str, Any]]:
    """A job's deliveries, oldest first."""
    return select_all(
        conn,
        f"SELECT {DELIVERY_VIEW_COLUMNS} FROM webhook_deliveries WHERE event_id = %s "
        "ORDER BY created_at, run",
        (event_id,),
    )

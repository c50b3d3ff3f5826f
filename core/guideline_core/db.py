"""PostgreSQL access shared by the API and the operator: a thread-safe connection pool,
versioned migrations (yoyo), and every query on the shared tables (`jobs`, `job_events`,
`operator_heartbeat`).

Every statement is parameterized. Callers hold a connection only for one short unit of
work (`Database.connection()`), never across a Kubernetes call that can block for long.
"""

from __future__ import annotations

import argparse
import logging
import select
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final

import psycopg2
import psycopg2.extras
import psycopg2.pool
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_core import dsn, logs
from guideline_core.changes import job_changes
from guideline_core.cost import DEFAULT_MODEL_PRICES, result_cost
from guideline_core.documents import store as document_store
from guideline_core.resource import TERMINAL_PHASES, Phase

log = logging.getLogger(__name__)
psycopg2.extras.register_uuid()

JOB_COLUMNS = (
    "event_id, namespace, cr_name, status, title, model, provider, attempts, result, error, "
    "submitted_by, idempotency_key, request_hash, created_at, updated_at, started_at, "
    "completed_at, tenant, created_by, max_retries, cr_uid, run, cancel_requested_at, "
    "dispatch_pending, dispatch_seq, dispatch_attempts, dispatch_error, dispatched_at, "
    "supersedes, review_thresholds, callback_url, changes, document, cost, estimated_cost, "
    "document_id, progress"
)
# NOTIFY channel of new `job_events` rows (payload `<event_id> <id>`, migration 0004).
JOB_EVENTS_CHANNEL = "guideline_job_events"
DELETED_REASON = "Deleted"
DELETED_MESSAGE = "the GuidelineJob was deleted before it finished"


class DatabaseUnavailableError(RuntimeError):
    """The database could not be reached or refused the connection."""


# --- migrations ----------------------------------------------------------------------------


def protect(database_url: str) -> None:
    """Keep the password of `database_url` out of every log line of this process."""
    for secret in dsn.password_of(database_url):
        logs.register_secret(secret)


def _unavailable(exc: Exception) -> DatabaseUnavailableError:
    # libpq's own text; scrubbed anyway, as it leaves the process in HTTP answers too.
    return DatabaseUnavailableError(logs.scrub(str(exc).strip()))


def migrate(database_url: str) -> int:
    """Apply pending migrations under yoyo's lock; returns how many were applied. The URL
    may be in keyword form (converted for yoyo, which takes URLs only)."""
    from yoyo import get_backend, read_migrations
    from yoyo.connections import BadConnectionURI

    protect(database_url)
    try:
        # postgresql:// means psycopg2 to yoyo
        backend = get_backend(dsn.to_uri(database_url))
    except BadConnectionURI:
        # Its message quotes the whole URL, password included.
        raise ValueError("database URL is not a valid PostgreSQL connection string") from None
    except psycopg2.OperationalError as exc:
        raise _unavailable(exc) from None
    migrations_dir = resources.files("guideline_core") / "migrations"
    with resources.as_file(migrations_dir) as path:
        migrations = read_migrations(str(path))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    log.info("database migrated", extra={"applied": len(pending)})
    return len(pending)


def migrate_main() -> None:
    """Console script `guideline-migrate`: apply migrations and exit."""
    from guideline_core.settings import CommonSettings

    parser = argparse.ArgumentParser(description="Apply guideline-ingest database migrations.")
    parser.add_argument("--database-url", default=None, help="default: GUIDELINE_DATABASE_URL")
    parser.add_argument(
        "--cache-role",
        default=None,
        help="then create (if missing) and grant the runner's chunk-cache role: it may only "
        "SELECT and INSERT chunk_summaries",
    )
    args = parser.parse_args()
    url = args.database_url or CommonSettings().database_url
    print(f"applied {migrate(url)} migration(s)")
    if args.cache_role:
        from guideline_core import summary_cache

        conn = psycopg2.connect(url)
        try:
            with conn:
                summary_cache.grant_cache_role(conn, args.cache_role)
        finally:
            conn.close()
        print(f"role {args.cache_role}: SELECT, INSERT on chunk_summaries")


# --- the pool ------------------------------------------------------------------------------


class _KeepingPool(psycopg2.pool.ThreadedConnectionPool):
    """psycopg2's pool, but a connection that comes back healthy is kept for reuse (up to
    `maxconn`), not closed once `minconn` are idle. With the stock behaviour every request
    beyond `minconn` at a time opened a new connection (a PostgreSQL backend start): at 80
    POST/s in `make bench`, p99 was 280-480 ms instead of 110-180 ms."""

    def _putconn(self, conn: PgConnection, key: Any = None, close: bool = False) -> None:
        # The base class keeps a returned connection while fewer than `minconn` are idle;
        # it runs under the pool's lock, so lending it `maxconn` for the call is safe.
        keep = self.minconn
        self.minconn = self.maxconn
        try:
            super()._putconn(conn, key, close)
        finally:
            self.minconn = keep


def _dead(conn: PgConnection) -> bool:
    """True if an idle pooled connection cannot be used: closed on this side, or the server
    wrote to it or hung up while it sat idle (the notice and EOF of a server restart)."""
    if conn.closed:
        return True
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg2.InterfaceError):
        return True


class Database:
    """A pool of connections to one PostgreSQL database.

    Without `acquire_timeout`, asking for a connection while all `maxconn` are in use fails
    at once (DatabaseUnavailableError). With it, the caller waits up to that many seconds
    for one to be returned: for a server whose worker threads outnumber the connections."""

    def __init__(
        self,
        url: str,
        minconn: int = 1,
        maxconn: int = 10,
        connect_timeout: int = 3,
        acquire_timeout: float | None = None,
    ):
        protect(url)
        self.url = url
        self._minconn, self._maxconn = minconn, maxconn
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._slots = threading.BoundedSemaphore(maxconn) if acquire_timeout is not None else None
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                try:
                    self._pool = _KeepingPool(
                        self._minconn,
                        self._maxconn,
                        self.url,
                        connect_timeout=self._connect_timeout,
                        application_name="guideline-ingest",
                    )
                except psycopg2.OperationalError as exc:
                    raise _unavailable(exc) from exc
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        """A pooled connection inside a transaction: committed on success, rolled back on
        error. A connection that broke is discarded rather than returned to the pool."""
        if self._slots is not None and not self._slots.acquire(timeout=self._acquire_timeout):
            raise DatabaseUnavailableError(
                f"no free database connection within {self._acquire_timeout:g} s (overloaded)"
            )
        try:
            with self._pooled() as conn:
                yield conn
        finally:
            if self._slots is not None:
                self._slots.release()

    @contextmanager
    def _pooled(self) -> Iterator[PgConnection]:
        pool = self._get_pool()
        for _ in range(self._maxconn + 1):
            try:
                conn = pool.getconn()
            except psycopg2.pool.PoolError as exc:
                raise DatabaseUnavailableError(f"connection pool exhausted: {exc}") from exc
            except psycopg2.OperationalError as exc:
                raise _unavailable(exc) from exc
            if not _dead(conn):
                break
            pool.putconn(conn, close=True)  # e.g. left behind by a server restart
        else:
            raise DatabaseUnavailableError("no usable database connection")
        broken = False
        try:
            with conn:
                yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            broken = True
            raise _unavailable(exc) from exc
        finally:
            pool.putconn(conn, close=broken or bool(conn.closed))

    def ping(self) -> None:
        """Raise DatabaseUnavailableError unless a trivial query succeeds."""
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


# --- jobs: submission ----------------------------------------------------------------------


@dataclass(frozen=True)
class NewJob:
    """What a submission records before any work starts."""

    event_id: uuid.UUID
    namespace: str
    guideline_text: str
    cr_name: str | None = None
    title: str | None = None
    model: str | None = None
    provider: str | None = None
    submitted_by: str = "anonymous"
    idempotency_key: str | None = None
    request_hash: str | None = None
    status: Phase = Phase.PENDING
    created_at: datetime | None = None
    tenant: str = "default"
    created_by: str | None = None  # the Kubernetes user, for a GuidelineJob made by kubectl
    max_retries: int | None = None
    cr_uid: str | None = None
    dispatch_pending: bool = False  # True: the dispatcher still has to create the CR
    supersedes: uuid.UUID | None = None
    review_thresholds: Mapping[str, float] | None = None
    callback_url: str | None = None  # webhook of its terminal states (checked by the API)
    trace_context: Mapping[str, str] | None = None  # W3C carrier of the submission's span
    document: Mapping[str, Any] | None = None  # what the API knows of the text (migration 0012)
    document_id: uuid.UUID | None = None  # the stored document (migration 0013)


def insert_job(conn: PgConnection, job: NewJob) -> bool:
    """Insert a job row; False if a row with that event_id already exists.

    A clash on (submitted_by, idempotency_key) raises psycopg2.errors.UniqueViolation so the
    caller can answer with the job that key already made."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO jobs (event_id, namespace, cr_name, status, title, guideline_text,
                              model, provider, submitted_by, idempotency_key, request_hash,
                              tenant, created_by, max_retries, cr_uid, dispatch_pending,
                              created_at, updated_at, supersedes, review_thresholds,
                              callback_url, trace_context, document, document_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                    coalesce(%s, now()), coalesce(%s, now()), %s, %s, %s, %s, %s, %s)
            ON CONFLICT (event_id) DO NOTHING
            """,
            (
                job.event_id,
                job.namespace,
                job.cr_name,
                str(job.status),
                job.title,
                job.guideline_text,
                job.model,
                job.provider,
                job.submitted_by,
                job.idempotency_key,
                job.request_hash,
                job.tenant,
                job.created_by,
                job.max_retries,
                job.cr_uid,
                job.dispatch_pending,
                job.created_at,
                job.created_at,
                job.supersedes,
                _json(job.review_thresholds),
                job.callback_url,
                _json(job.trace_context or None),
                _json(job.document),
                job.document_id,
            ),
        )
        inserted = cur.rowcount == 1
    if inserted:
        add_event(conn, job.event_id, str(job.status), 0, "Accepted")
        add_audit(
            conn,
            tenant=job.tenant,
            actor=job.created_by or job.submitted_by,
            action="submit",
            event_id=job.event_id,
        )
    return inserted


def ensure_job(conn: PgConnection, job: NewJob, lock_timeout_s: float = 10.0) -> bool:
    """Insert the row of a job first seen as a GuidelineJob (e.g. made by `kubectl apply`)
    unless it exists, and record `job.cr_name` if the row has no name yet; True if inserted.

    The API inserts the row and creates the CR in one transaction; if the CR is seen before
    that commits, this INSERT waits on the row lock and then does nothing (ON CONFLICT DO
    NOTHING). `lock_timeout_s` bounds that wait (for this transaction only)."""
    with conn.cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = %s", (f"{int(lock_timeout_s * 1000)}ms",))
    inserted = insert_job(conn, job)
    if job.cr_name is not None:
        # The API creates the CR by generateName, so its row may not know the name yet.
        set_cr_name(conn, job.event_id, job.cr_name, only_if_unset=True)
    return inserted


def set_cr_name(
    conn: PgConnection, event_id: uuid.UUID, cr_name: str, *, only_if_unset: bool = False
) -> None:
    """Record the name the API server gave the job's GuidelineJob (with `only_if_unset`,
    only on a row that has none)."""
    sql = "UPDATE jobs SET cr_name = %s WHERE event_id = %s"
    if only_if_unset:
        sql += " AND cr_name IS NULL"
    with conn.cursor() as cur:
        cur.execute(sql, (cr_name, event_id))


def find_by_idempotency_key(
    conn: PgConnection,
    tenant: str,
    idempotency_key: str,
    window_hours: int | None = None,
) -> dict[str, Any] | None:
    """The job a (tenant, Idempotency-Key) pair already created, if any, with `expired`
    telling whether it is older than `window_hours` (then the key may be used again;
    never expired without a window)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            f"SELECT {JOB_COLUMNS}, "
            "coalesce(created_at < now() - make_interval(hours => %s), false) AS expired "
            "FROM jobs WHERE tenant = %s AND idempotency_key = %s",
            (window_hours, tenant, idempotency_key),
        )
        return cur.fetchone()


def live_idempotency_keys(
    conn: PgConnection, tenant: str, keys: list[str], window_hours: int
) -> set[str]:
    """Those of `keys` that already name a job of `tenant` within `window_hours` (a
    submission with one of them replays that job)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT idempotency_key FROM jobs WHERE tenant = %s AND idempotency_key = ANY(%s) "
            "AND created_at >= now() - make_interval(hours => %s)",
            (tenant, keys, window_hours),
        )
        return {key for (key,) in cur.fetchall()}


def release_idempotency_key(conn: PgConnection, event_id: uuid.UUID) -> None:
    """Detach an expired key from its old job so the unique index admits it again."""
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs SET idempotency_key = NULL WHERE event_id = %s", (event_id,))


# --- jobs: reads ---------------------------------------------------------------------------


def get_job(conn: PgConnection, event_id: uuid.UUID) -> dict[str, Any] | None:
    """One job by its event_id (primary-key lookup), without the guideline text."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE event_id = %s", (event_id,))
        return cur.fetchone()


def get_guideline_text(conn: PgConnection, event_id: uuid.UUID) -> str | None:
    """The guideline text a job was submitted with."""
    with conn.cursor() as cur:
        cur.execute("SELECT guideline_text FROM jobs WHERE event_id = %s", (event_id,))
        row = cur.fetchone()
        return row[0] if row else None


def put_extracted_text(
    conn: PgConnection, event_id: uuid.UUID, text: str, document: Mapping[str, Any]
) -> bool:
    """Store the runner's extraction of a job's document: the job's text and the
    document's metadata (what the API wrote at intake, completed); False if no such job."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET guideline_text = %s, "
            "document = coalesce(document, '{}'::jsonb) || %s WHERE event_id = %s",
            (text, _json(document), event_id),
        )
        return cur.rowcount == 1


def _job_filter(
    status: Phase | None, tenant: str | None, needs_review: bool | None
) -> tuple[list[str], list[Any]]:
    """The WHERE clauses and parameters of a job listing's filters."""
    clauses: list[str] = []
    params: list[Any] = []
    if tenant is not None:
        clauses.append("tenant = %s")
        params.append(tenant)
    if status is not None:
        clauses.append("status = %s")
        params.append(str(status))
    if needs_review is True:
        clauses.append("(result ->> 'needs_review') = 'true'")
    elif needs_review is False:
        clauses.append(
            "status = 'COMPLETED' AND (result ->> 'needs_review') IS DISTINCT FROM 'true'"
        )
    return clauses, params


def job_totals(
    conn: PgConnection,
    *,
    status: Phase | None,
    tenant: str | None = None,
    needs_review: bool | None = None,
) -> dict[str, Any]:
    """The jobs a listing's filters match (every page) and their stored cost, summed per
    currency: `{"jobs": n, "cost": [{"amount", "currency"}]}`."""
    clauses, params = _job_filter(status, tenant, needs_review)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM jobs {where}", params)
        jobs = int(cur.fetchone()[0])
        cur.execute(
            "SELECT cost ->> 'currency', sum((cost ->> 'amount')::numeric) FROM jobs "
            f"{where} {'AND' if clauses else 'WHERE'} cost IS NOT NULL "
            "GROUP BY 1 ORDER BY 1",
            params,
        )
        costs = [{"amount": float(amount), "currency": currency} for currency, amount in cur]
    return {"jobs": jobs, "cost": costs}


def list_jobs(
    conn: PgConnection,
    *,
    status: Phase | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
    tenant: str | None = None,
    needs_review: bool | None = None,
) -> list[dict[str, Any]]:
    """Jobs newest first, optionally of one status and one tenant, after a keyset cursor
    (created_at, event_id) of the last row of the previous page. `needs_review` True:
    only results flagged for review (a partial index serves it); False: only COMPLETED
    jobs whose result is not flagged."""
    clauses, params = _job_filter(status, tenant, needs_review)
    if before is not None:
        clauses.append("(created_at, event_id) < (%s, %s)")
        params.extend(before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs {where} "
            "ORDER BY created_at DESC, event_id DESC LIMIT %s",
            (*params, limit),
        )
        return list(cur.fetchall())


def count_by_status(conn: PgConnection) -> dict[str, int]:
    """Number of jobs in each status (every status present, zero when none)."""
    counts = {str(p): 0 for p in Phase}
    with conn.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM jobs GROUP BY status")
        counts.update({status: n for status, n in cur.fetchall()})
    return counts


def count_status(conn: PgConnection, status: Phase) -> int:
    """Number of jobs in one status (served by the status index)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE status = %s", (str(status),))
        return int(cur.fetchone()[0])


def queue_position(
    conn: PgConnection, created_at: datetime, event_id: uuid.UUID, tenant: str | None = None
) -> int:
    """1 + the number of PENDING jobs submitted before this one (of the same tenant, when
    given: the operator admits tenants in turn, in submission order within each)."""
    sql = "SELECT count(*) FROM jobs WHERE status = %s AND (created_at, event_id) < (%s, %s)"
    params: list[Any] = [str(Phase.PENDING), created_at, event_id]
    if tenant is not None:
        sql += " AND tenant = %s"
        params.append(tenant)
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return int(cur.fetchone()[0]) + 1


def count_tenant_status(conn: PgConnection, tenant: str, status: Phase) -> int:
    """Number of one tenant's jobs in one status (served by the tenant/status index)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM jobs WHERE tenant = %s AND status = %s", (tenant, str(status))
        )
        return int(cur.fetchone()[0])


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
        return int(cur.fetchone()[0])


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
        spent, reserved = cur.fetchone()
    return float(spent), float(reserved)


def set_estimated_cost(conn: PgConnection, event_id: uuid.UUID, cost: Mapping[str, Any]) -> None:
    """Store a job's estimated cost ({amount, currency}), reserved against its tenant's
    budget until it finishes."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET estimated_cost = %s WHERE event_id = %s", (_json(cost), event_id)
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
        return int(cur.fetchone()[0])


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
        total = int(cur.fetchone()[0])
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


# --- jobs: state written by the operator ---------------------------------------------------


@dataclass(frozen=True)
class JobState:
    """The state of a job as the operator observed it on the cluster."""

    event_id: uuid.UUID
    status: Phase
    attempts: int
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    reason: str | None = None
    message: str | None = None
    run: int = 0  # the CR's status.retryRequests: which run of the job this state is of
    actor: str = "operator"  # who caused it, for the audit log


def mirror_state(
    conn: PgConnection, state: JobState, prices: Mapping[str, Any] | None = None
) -> bool:
    """Write the observed state into the job's row; True if anything changed.

    Idempotent: writing the same state twice changes nothing and records no event.
    `attempts` and `run` never go backwards. A state of an older run than the row's (the
    API already accepted a retry the cluster has not seen yet) is ignored, and so is a
    different status over a terminal one of the same run (a job cancelled through the API
    stays CANCELLED even if its pod finished at that moment): what the API answered holds.

    A COMPLETED job that supersedes another gets its `changes` in the same UPDATE (so the
    webhook trigger's copy of the row has them); a job completing refreshes the changes of
    its COMPLETED superseders that had none available yet (a retry's late result).

    A COMPLETED job gets its `cost` (`result.usage.cost`: its tokens at `prices`, the
    `model_prices` table) in the same UPDATE, kept as it is once stored for this result."""
    changes = _changes_on_completion(conn, state) if state.status == Phase.COMPLETED else None
    cost = None
    if state.status == Phase.COMPLETED and isinstance(state.result, Mapping):
        cost = result_cost(state.result, DEFAULT_MODEL_PRICES if prices is None else prices)
        if cost is not None:
            cost["computed_at"] = datetime.now(UTC).isoformat()
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE jobs SET status = %s, attempts = greatest(attempts, %s),
                   started_at = coalesce(%s, started_at),
                   completed_at = %s,
                   result = %s, error = %s, updated_at = now(), run = greatest(run, %s),
                   changes = %s,
                   cost = CASE WHEN status = %s AND result = %s AND cost IS NOT NULL
                               THEN cost ELSE %s END
             WHERE event_id = %s
               AND (%s > run OR (%s = run AND (status <> ALL(%s) OR status = %s)))
               AND (status IS DISTINCT FROM %s OR attempts < %s
                    OR result IS DISTINCT FROM %s OR error IS DISTINCT FROM %s
                    OR started_at IS DISTINCT FROM coalesce(%s, started_at)
                    OR completed_at IS DISTINCT FROM %s)
            RETURNING tenant
            """,
            (
                str(state.status),
                state.attempts,
                state.started_at,
                state.completed_at,
                _json(state.result),
                _json(state.error),
                state.run,
                _json(changes),
                str(Phase.COMPLETED),
                _json(state.result),
                _json(cost),
                state.event_id,
                state.run,
                state.run,
                [p.value for p in TERMINAL_PHASES],
                str(state.status),
                str(state.status),
                state.attempts,
                _json(state.result),
                _json(state.error),
                state.started_at,
                state.completed_at,
            ),
        )
        updated = cur.fetchone()
        if updated is None:
            return False
        cur.execute(
            """
            INSERT INTO job_events (event_id, status, attempts, reason, message)
            SELECT %s, %s, %s, %s, %s
             WHERE NOT EXISTS (
                SELECT 1 FROM (SELECT status, attempts FROM job_events WHERE event_id = %s
                                ORDER BY id DESC LIMIT 1) last
                 WHERE last.status = %s AND last.attempts = %s)
            """,
            (
                state.event_id,
                str(state.status),
                state.attempts,
                state.reason,
                state.message,
                state.event_id,
                str(state.status),
                state.attempts,
            ),
        )
        if cur.rowcount == 1:
            add_audit(
                conn,
                tenant=updated[0],
                actor=state.actor,
                action=f"status:{state.status}",
                event_id=state.event_id,
                detail={"attempts": state.attempts, "run": state.run, "reason": state.reason},
            )
    if state.status == Phase.COMPLETED:
        _refresh_superseders(conn, state.event_id)
    return True


PROGRESS_FIELDS: Final = ("sections_done", "sections_total", "calls_done", "calls_total")
PROGRESS_REASON: Final = "Progress"


def progress_of(raw: Any) -> dict[str, int] | None:
    """The four counts of a `status.progress` (whole numbers, 0 if missing); None if it is
    not an object."""
    if not isinstance(raw, Mapping):
        return None
    counts = {}
    for name in PROGRESS_FIELDS:
        value = raw.get(name)
        counts[name] = value if isinstance(value, int) and value >= 0 else 0
    return counts


def mirror_progress(
    conn: PgConnection, event_id: uuid.UUID, run: int, progress: Mapping[str, int]
) -> bool:
    """Store the progress of a PROCESSING job's run `run` and add a `progress` event to its
    history (the event stream's); True if it changed. Nothing for a job no longer
    PROCESSING or already in a later run (a late write of a finished pod)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE jobs SET progress = %s
             WHERE event_id = %s AND status = %s AND run = %s
               AND progress IS DISTINCT FROM %s
            RETURNING status, attempts
            """,
            (_json(progress), event_id, str(Phase.PROCESSING), run, _json(progress)),
        )
        updated = cur.fetchone()
        if updated is None:
            return False
        cur.execute(
            "INSERT INTO job_events (event_id, status, attempts, reason, progress) "
            "VALUES (%s, %s, %s, %s, %s)",
            (event_id, updated[0], updated[1], PROGRESS_REASON, _json(progress)),
        )
    return True


def _changes_on_completion(conn: PgConnection, state: JobState) -> dict[str, Any] | None:
    """The `changes` to store with COMPLETED `state`: None unless the job supersedes
    another; what is stored already if the row has this result (nothing is recomputed)."""
    if not isinstance(state.result, Mapping):
        return None
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT tenant, supersedes, changes, status = %s AND result = %s AS known "
            "FROM jobs WHERE event_id = %s",
            (str(Phase.COMPLETED), _json(state.result), state.event_id),
        )
        job = cur.fetchone()
    if job is None or job["supersedes"] is None:
        return None
    if job["known"] and job["changes"] is not None:
        return job["changes"]
    return _compute_changes(conn, job, state.result)


def _compute_changes(
    conn: PgConnection, job: Mapping[str, Any], result: Mapping[str, Any]
) -> dict[str, Any]:
    """`guideline_core.changes.job_changes` of `job` (tenant, supersedes) with `result`,
    against the superseded row read under a share lock: a superseded job completing at
    this moment either commits first (and is seen) or waits for this transaction (and then
    refreshes this job's changes, `_refresh_superseders`)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT tenant, status, result FROM jobs WHERE event_id = %s FOR SHARE",
            (job["supersedes"],),
        )
        return job_changes(job, result, cur.fetchone())


def _refresh_superseders(conn: PgConnection, event_id: uuid.UUID) -> None:
    """Store the changes of the COMPLETED jobs superseding `event_id` that had none
    available (it completed after them: a retry of a failed job)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT event_id, tenant, supersedes, result FROM jobs "
            "WHERE supersedes = %s AND status = %s AND (changes ->> 'available') = 'false'",
            (event_id, str(Phase.COMPLETED)),
        )
        for job in cur.fetchall():
            if isinstance(job["result"], dict):
                store_changes(conn, job["event_id"], _compute_changes(conn, job, job["result"]))


def store_changes(conn: PgConnection, event_id: uuid.UUID, changes: Mapping[str, Any]) -> None:
    """Store a job's `changes` (the status is untouched: no webhook is enqueued again)."""
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs SET changes = %s WHERE event_id = %s", (_json(changes), event_id))


def changes_of(conn: PgConnection, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored `changes` of a COMPLETED row that supersedes another; computed and
    stored once if missing (a job completed before migration 0007)."""
    if not row.get("supersedes") or row["status"] != Phase.COMPLETED:
        return None
    if row.get("changes") is not None:
        return row["changes"]
    if not isinstance(row.get("result"), dict):
        return None
    changes = _compute_changes(conn, row, row["result"])
    store_changes(conn, row["event_id"], changes)
    return changes


def finish_if_active(conn: PgConnection, state: JobState) -> bool:
    """Write a terminal `state` only if the row is not terminal already (checked under a
    row lock, so a job finishing at the same moment keeps its own outcome). True if the
    row changed."""
    with conn.cursor() as cur:
        cur.execute("SELECT status FROM jobs WHERE event_id = %s FOR UPDATE", (state.event_id,))
        row = cur.fetchone()
    if row is None or is_terminal(row[0]):
        return False
    return mirror_state(conn, state)


def mark_deleted(
    conn: PgConnection,
    event_id: str | uuid.UUID,
    attempts: int,
    started_at: datetime | None,
) -> bool:
    """Record that a job's GuidelineJob was deleted before it finished: CANCELLED with
    reason `Deleted`, unless its row is already terminal or missing. True if the row
    changed."""
    return finish_if_active(
        conn,
        JobState(
            event_id=uuid.UUID(str(event_id)),
            status=Phase.CANCELLED,
            attempts=attempts,
            started_at=started_at,
            completed_at=datetime.now(UTC).replace(microsecond=0),
            error={"reason": DELETED_REASON, "message": DELETED_MESSAGE},
            reason=DELETED_REASON,
            message=DELETED_MESSAGE,
        ),
    )


def purge_finished(conn: PgConnection, older_than_days: int) -> int:
    """Delete rows of jobs that finished more than `older_than_days` days ago (their
    status history and their stored documents go with them); returns how many."""
    with conn.cursor() as cur:
        cur.execute(
            """
            DELETE FROM jobs
             WHERE status = ANY(%s)
               AND completed_at < now() - make_interval(days => %s)
            RETURNING document_id
            """,
            ([p.value for p in TERMINAL_PHASES], older_than_days),
        )
        documents = [doc for (doc,) in cur.fetchall() if doc is not None]
        deleted = cur.rowcount
    document_store.delete_for_jobs(conn, documents)
    # The audit trail is kept no longer than the jobs it speaks of.
    purge_audit(conn, older_than_days)
    return deleted


def purge_audit(conn: PgConnection, older_than_days: int) -> int:
    """Delete audit entries older than `older_than_days` days; returns how many."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM audit_log WHERE at < now() - make_interval(days => %s)",
            (older_than_days,),
        )
        return cur.rowcount


# --- status history ------------------------------------------------------------------------


def add_event(
    conn: PgConnection,
    event_id: uuid.UUID,
    status: str,
    attempts: int,
    reason: str,
    message: str | None = None,
) -> None:
    """Append an entry to the job's history (e.g. a request made through the API) without
    changing its row."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO job_events (event_id, status, attempts, reason, message) "
            "VALUES (%s, %s, %s, %s, %s)",
            (event_id, status, attempts, reason, message),
        )


def job_history(conn: PgConnection, event_id: uuid.UUID) -> list[dict[str, Any]]:
    """The job's status transitions, oldest first (not its progress events)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT at, status, attempts, reason, message FROM job_events "
            "WHERE event_id = %s AND progress IS NULL ORDER BY id",
            (event_id,),
        )
        return list(cur.fetchall())


def events_after(
    conn: PgConnection, event_id: uuid.UUID, after_id: int, limit: int = 100
) -> list[dict[str, Any]]:
    """The job's events with an id above `after_id`, oldest first (its event stream):
    status events, and progress events (`progress` not null)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT id, at, status, attempts, run, reason, message, progress FROM job_events "
            "WHERE event_id = %s AND id > %s ORDER BY id LIMIT %s",
            (event_id, after_id, limit),
        )
        return list(cur.fetchall())


def job_state(conn: PgConnection, event_id: uuid.UUID) -> dict[str, Any] | None:
    """The few columns an event stream needs of a job (status, tenant, created_at, run)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT event_id, status, tenant, created_at, run, attempts FROM jobs "
            "WHERE event_id = %s",
            (event_id,),
        )
        return cur.fetchone()


def connect_listener(url: str, connect_timeout: int = 3) -> PgConnection:
    """A dedicated autocommit connection LISTENing on JOB_EVENTS_CHANNEL: wait for its
    socket to be readable, then `poll()` and read `notifies`. TCP keepalives make a
    silently vanished server show up as an error within about a minute."""
    protect(url)
    try:
        conn = psycopg2.connect(
            url,
            connect_timeout=connect_timeout,
            application_name="guideline-ingest-listener",
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
    except psycopg2.OperationalError as exc:
        raise _unavailable(exc) from exc
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {JOB_EVENTS_CHANNEL}")
    return conn


# --- the operator's heartbeat --------------------------------------------------------------


def heartbeat(conn: PgConnection, identity: str) -> None:
    """Record that the operator replica `identity` is alive now."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO operator_heartbeat (identity, seen_at) VALUES (%s, now())
            ON CONFLICT (identity) DO UPDATE SET seen_at = excluded.seen_at
            """,
            (identity,),
        )


def latest_heartbeat(conn: PgConnection) -> dict[str, Any] | None:
    """The operator replica seen most recently (`identity`, `seen_at`) with its `age` in
    seconds; None if no operator ever ran."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT identity, seen_at, extract(epoch FROM now() - seen_at)::float AS age "
            "FROM operator_heartbeat ORDER BY seen_at DESC LIMIT 1"
        )
        return cur.fetchone()


# --- the outbox: requests the dispatcher carries to the cluster --------------------------


def claim_dispatch(conn: PgConnection, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
    """Claim up to `limit` rows whose cluster state is behind (oldest first), leasing them
    for `lease_seconds` so no other dispatcher takes them meanwhile (SKIP LOCKED: replicas
    claiming at the same moment get disjoint rows). Each row comes with its trace context
    and its input: `document_ref` (the GuidelineJob's `spec.documentRef`) when it has a
    stored document, else its text (`guideline_text`, rows older than migration 0013)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            f"""
            UPDATE jobs SET dispatch_after = now() + make_interval(secs => %s),
                   dispatch_attempts = dispatch_attempts + 1
             WHERE event_id IN (
                   SELECT event_id FROM jobs
                    WHERE dispatch_pending AND (dispatch_after IS NULL OR dispatch_after <= now())
                    ORDER BY dispatch_after NULLS FIRST, created_at
                    LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING {JOB_COLUMNS}, trace_context,
                   CASE WHEN document_id IS NULL THEN guideline_text END AS guideline_text,
                   (SELECT json_build_object('id', d.id, 'sha256', d.sha256,
                                             'mediaType', d.media_type, 'bytes', d.bytes)
                      FROM documents d WHERE d.id = jobs.document_id) AS document_ref
            """,
            (lease_seconds, limit),
        )
        return sorted(cur.fetchall(), key=lambda r: r["created_at"])


def finish_dispatch(
    conn: PgConnection,
    event_id: uuid.UUID,
    seq: int,
    *,
    cr_name: str | None = None,
    cr_uid: str | None = None,
) -> bool:
    """Record a dispatch pass over a row claimed at `seq` (and the CR it created, if any).
    The row leaves the outbox unless a newer request arrived meanwhile; True if it left."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE jobs SET cr_name = coalesce(%s, cr_name), cr_uid = coalesce(%s, cr_uid),
                   dispatched_at = CASE WHEN %s::text IS NULL THEN dispatched_at
                                        ELSE coalesce(dispatched_at, now()) END,
                   dispatch_pending = (dispatch_seq <> %s),
                   dispatch_after = NULL, dispatch_error = NULL, dispatch_attempts = 0
             WHERE event_id = %s
            RETURNING dispatch_pending
            """,
            (cr_name, cr_uid, cr_uid, seq, event_id),
        )
        row = cur.fetchone()
        return row is not None and not row[0]


def defer_dispatch(conn: PgConnection, event_id: uuid.UUID, error: str, delay: float) -> None:
    """Leave a row in the outbox for another try in `delay` seconds, saying why."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET dispatch_after = now() + make_interval(secs => %s), "
            "dispatch_error = %s WHERE event_id = %s AND dispatch_pending",
            (delay, error[:500], event_id),
        )


def release_dispatch(conn: PgConnection, event_ids: list[uuid.UUID]) -> None:
    """Give back rows a stopping dispatcher claimed but never started: due again at once,
    the claim not counted as an attempt."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET dispatch_after = NULL, "
            "dispatch_attempts = greatest(dispatch_attempts - 1, 0) "
            "WHERE event_id = ANY(%s::uuid[]) AND dispatch_pending",
            (event_ids,),
        )


def outbox_size(conn: PgConnection) -> int:
    """Rows whose cluster state is behind (served by the partial outbox index)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE dispatch_pending")
        return int(cur.fetchone()[0])


def lock_job(conn: PgConnection, event_id: uuid.UUID) -> dict[str, Any] | None:
    """The job's row, locked until the transaction ends (for a request that decides on
    its current state)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE event_id = %s FOR UPDATE", (event_id,))
        return cur.fetchone()


def request_cancel(conn: PgConnection, row: Mapping[str, Any], actor: str, message: str) -> None:
    """Cancel a locked, unfinished job: CANCELLED now (what the API answers holds), and
    the request queued for the dispatcher to carry to the GuidelineJob."""
    now = datetime.now(UTC)
    mirror_state(
        conn,
        JobState(
            event_id=row["event_id"],
            status=Phase.CANCELLED,
            attempts=row["attempts"],
            started_at=row["started_at"],
            completed_at=now,
            error={"reason": "Cancelled", "message": message},
            reason="Cancelled",
            message=message,
            run=row["run"],
            actor=actor,
        ),
    )
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET cancel_requested_at = %s, dispatch_pending = true, "
            "dispatch_seq = dispatch_seq + 1, dispatch_after = NULL WHERE event_id = %s",
            (now, row["event_id"]),
        )


def request_retry(conn: PgConnection, row: Mapping[str, Any], actor: str, message: str) -> int:
    """Start a new run of a locked FAILED or CANCELLED job: PENDING now with `run` + 1,
    the request queued for the dispatcher; returns the new run."""
    run = int(row["run"]) + 1
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE jobs SET status = %s, run = %s, result = NULL, error = NULL,
                   progress = NULL,
                   completed_at = NULL, cancel_requested_at = NULL, updated_at = now(),
                   dispatch_pending = true, dispatch_seq = dispatch_seq + 1,
                   dispatch_after = NULL
             WHERE event_id = %s
            """,
            (str(Phase.PENDING), run, row["event_id"]),
        )
    add_event(conn, row["event_id"], str(Phase.PENDING), row["attempts"], "RetryRequested", message)
    add_audit(
        conn,
        tenant=row["tenant"],
        actor=actor,
        action="retry",
        event_id=row["event_id"],
        detail={"run": run},
    )
    return run


# --- audit ---------------------------------------------------------------------------------


AUDIT_COLUMNS = "id, at, tenant, actor, action, event_id, detail"


def add_audit(
    conn: PgConnection,
    *,
    tenant: str,
    actor: str,
    action: str,
    event_id: uuid.UUID | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record who did what (a state change, a request, a read of a guideline text)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO audit_log (tenant, actor, action, event_id, detail) "
            "VALUES (%s, %s, %s, %s, %s)",
            (tenant, actor, action, event_id, _json(detail)),
        )


def record_text_read(
    conn: PgConnection,
    *,
    tenant: str,
    actor: str,
    event_id: uuid.UUID,
    window_seconds: float,
    detail: Mapping[str, Any],
) -> None:
    """Audit a read of a job's guideline text: the first read by `actor` of this job
    within `window_seconds` adds an entry (`detail.reads` 1); later ones in that window
    count on that entry (`reads`, `last_at`) instead of adding one each."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE audit_log
               SET detail = coalesce(detail, '{}'::jsonb) || jsonb_build_object(
                       'reads', coalesce((detail ->> 'reads')::bigint, 1) + 1,
                       'last_at', now())
             WHERE id = (SELECT id FROM audit_log
                          WHERE event_id = %s AND action = 'read_text' AND actor = %s
                            AND at > now() - make_interval(secs => %s)
                          ORDER BY id DESC LIMIT 1
                          FOR UPDATE)
            """,
            (event_id, actor, window_seconds),
        )
        if cur.rowcount:
            return
    add_audit(
        conn,
        tenant=tenant,
        actor=actor,
        action="read_text",
        event_id=event_id,
        detail={**detail, "reads": 1},
    )


def list_audit(
    conn: PgConnection,
    *,
    limit: int,
    tenant: str | None = None,
    event_id: uuid.UUID | None = None,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Audit entries newest first, optionally of one tenant or job, below a keyset id."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("tenant", tenant), ("event_id", event_id)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if before_id is not None:
        clauses.append("id < %s")
        params.append(before_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT %s",
            (*params, limit),
        )
        return list(cur.fetchall())


# --- the operator: tenants of queued jobs --------------------------------------------------


def tenants_of(conn: PgConnection, event_ids: list[uuid.UUID]) -> dict[str, str]:
    """event_id (as text) -> tenant of the rows among `event_ids` that exist (one query)."""
    if not event_ids:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT event_id, tenant FROM jobs WHERE event_id = ANY(%s::uuid[])", (event_ids,)
        )
        return {str(event_id): tenant for event_id, tenant in cur.fetchall()}


# --- helpers -------------------------------------------------------------------------------


def is_terminal(status: str) -> bool:
    """True if `status` is a terminal phase."""
    return status in {str(p) for p in TERMINAL_PHASES}


def _json(value: Mapping[str, Any] | None) -> psycopg2.extras.Json | None:
    return psycopg2.extras.Json(dict(value)) if value is not None else None

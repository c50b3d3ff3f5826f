"""PostgreSQL access shared by the API and the operator: a thread-safe connection pool,
versioned migrations (yoyo), and every query on the shared tables.

Where SQL lives: every SQL statement of guideline-ingest is in this package, one module per
table family (`pool`: connections and migrations; `jobs`: submission and reads;
`tenants`: per-tenant figures and the rate counter; `mirror`: the state the operator
observes; `outbox`: requests the dispatcher carries to the cluster; `events`: a job's
history and its NOTIFY channel; `audit`; `liveness`: the operator's heartbeat; `purge`:
retention; `webhooks`: signing secrets and the delivery outbox). Two stores keep their
own, as each is one concern end to end over its own table: the document store
(`guideline_core.documents.store`, chunked bytes) and the runner's chunk cache
(`guideline_core.summary_cache`, under its own restricted role). Components call these
functions; they write no SQL (the API's savepoint around a submission aside).

Every statement is parameterized. Callers hold a connection only for one short unit of
work (`Database.connection()`), never across a Kubernetes call that can block for long.
Rows come back as `JobRow` (and its extensions) for the `jobs` table, plain dicts elsewhere.

Callers use the package (`from guideline_core import db; db.get_job(conn, event_id)`):
its names are re-exported here.
"""

from guideline_core.db.audit import (
    AUDIT_COLUMNS,
    add_audit,
    list_audit,
    purge_audit,
    record_text_read,
)
from guideline_core.db.events import (
    JOB_EVENTS_CHANNEL,
    add_event,
    connect_listener,
    events_after,
    job_history,
    job_state,
)
from guideline_core.db.jobs import (
    NewJob,
    count_by_status,
    count_status,
    ensure_job,
    find_by_idempotency_key,
    get_guideline_text,
    get_job,
    insert_job,
    job_totals,
    list_jobs,
    live_idempotency_keys,
    put_extracted_text,
    queue_position,
    release_idempotency_key,
    set_cr_name,
    tenants_of,
)
from guideline_core.db.liveness import heartbeat, latest_heartbeat
from guideline_core.db.mirror import (
    DELETED_MESSAGE,
    DELETED_REASON,
    PROGRESS_FIELDS,
    PROGRESS_REASON,
    JobState,
    changes_of,
    finish_if_active,
    is_terminal,
    mark_deleted,
    mirror_progress,
    mirror_state,
    progress_of,
    store_changes,
)
from guideline_core.db.outbox import (
    claim_dispatch,
    defer_dispatch,
    finish_dispatch,
    lock_job,
    outbox_size,
    release_dispatch,
    request_cancel,
    request_retry,
)
from guideline_core.db.pool import (
    Database,
    DatabaseUnavailableError,
    migrate,
    migrate_main,
    protect,
)
from guideline_core.db.purge import purge_finished
from guideline_core.db.rows import JOB_COLUMNS, DispatchRow, IdempotentRow, JobRow
from guideline_core.db.tenants import (
    count_submission,
    count_tenant_status,
    pending_by_tenant,
    refund_submission,
    set_estimated_cost,
    tenant_spending,
    tenant_text_bytes,
    tenants_waiting,
)

__all__ = [
    "AUDIT_COLUMNS",
    "DELETED_MESSAGE",
    "DELETED_REASON",
    "JOB_COLUMNS",
    "JOB_EVENTS_CHANNEL",
    "PROGRESS_FIELDS",
    "PROGRESS_REASON",
    "Database",
    "DatabaseUnavailableError",
    "DispatchRow",
    "IdempotentRow",
    "JobRow",
    "JobState",
    "NewJob",
    "add_audit",
    "add_event",
    "changes_of",
    "claim_dispatch",
    "connect_listener",
    "count_by_status",
    "count_status",
    "count_submission",
    "count_tenant_status",
    "defer_dispatch",
    "ensure_job",
    "events_after",
    "find_by_idempotency_key",
    "finish_dispatch",
    "finish_if_active",
    "get_guideline_text",
    "get_job",
    "heartbeat",
    "insert_job",
    "is_terminal",
    "job_history",
    "job_state",
    "job_totals",
    "latest_heartbeat",
    "list_audit",
    "list_jobs",
    "live_idempotency_keys",
    "lock_job",
    "mark_deleted",
    "migrate",
    "migrate_main",
    "mirror_progress",
    "mirror_state",
    "outbox_size",
    "pending_by_tenant",
    "progress_of",
    "protect",
    "purge_audit",
    "purge_finished",
    "put_extracted_text",
    "queue_position",
    "record_text_read",
    "refund_submission",
    "release_dispatch",
    "release_idempotency_key",
    "request_cancel",
    "request_retry",
    "set_cr_name",
    "set_estimated_cost",
    "store_changes",
    "tenant_spending",
    "tenant_text_bytes",
    "tenants_of",
    "tenants_waiting",
]

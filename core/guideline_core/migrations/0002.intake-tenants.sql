-- Intake outbox, tenants, trust and audit.
-- depends: 0001.initial

-- The row is the acceptance: the API commits it and answers; the dispatcher (in the API
-- process) then makes the cluster match it. `dispatch_pending` is true while the cluster
-- does not yet reflect the row (GuidelineJob not created, or a cancel/retry request not
-- yet carried to its annotations).
ALTER TABLE jobs
    ADD COLUMN tenant            text        NOT NULL DEFAULT 'default',
    ADD COLUMN created_by        text,
    ADD COLUMN max_retries       integer,
    ADD COLUMN cr_uid            text,
    ADD COLUMN run               integer     NOT NULL DEFAULT 0,
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN dispatch_pending  boolean     NOT NULL DEFAULT false,
    -- bumped by every request the dispatcher must carry; a pass finishes a row only if
    -- no newer request arrived meanwhile
    ADD COLUMN dispatch_seq      integer     NOT NULL DEFAULT 0,
    ADD COLUMN dispatched_at     timestamptz,
    ADD COLUMN dispatch_attempts integer     NOT NULL DEFAULT 0,
    ADD COLUMN dispatch_after    timestamptz,
    ADD COLUMN dispatch_error    text;

UPDATE jobs SET tenant = submitted_by;

CREATE INDEX jobs_outbox_idx ON jobs (dispatch_after NULLS FIRST, created_at)
    WHERE dispatch_pending;
CREATE INDEX jobs_tenant_created_idx ON jobs (tenant, created_at DESC, event_id DESC);
CREATE INDEX jobs_tenant_status_idx ON jobs (tenant, status, created_at DESC, event_id DESC);

-- Idempotency keys are scoped by tenant.
DROP INDEX jobs_idempotency_idx;
CREATE UNIQUE INDEX jobs_idempotency_idx ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Submissions per tenant and minute, counted here so the limit holds across API replicas.
CREATE TABLE tenant_rate (
    tenant       text        NOT NULL,
    window_start timestamptz NOT NULL,
    count        integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, window_start)
);

-- Who did what: state changes, requests and reads of a guideline text.
CREATE TABLE audit_log (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    tenant   text        NOT NULL,
    actor    text        NOT NULL,
    action   text        NOT NULL,
    event_id uuid,
    detail   jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_tenant_at_idx ON audit_log (tenant, at DESC, id DESC);
CREATE INDEX audit_log_event_idx ON audit_log (event_id, id);

-- The system of record: one row per job, its status history, the operator's heartbeat.
CREATE TABLE jobs (
    event_id        uuid PRIMARY KEY,
    namespace       text        NOT NULL,
    cr_name         text,
    status          text        NOT NULL
                    CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    title           text,
    guideline_text  text        NOT NULL,
    model           text,
    provider        text,
    attempts        integer     NOT NULL DEFAULT 0,
    result          jsonb,
    error           jsonb,
    submitted_by    text        NOT NULL DEFAULT 'anonymous',
    idempotency_key text,
    request_hash    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz
);

CREATE INDEX jobs_created_idx ON jobs (created_at DESC, event_id DESC);
CREATE INDEX jobs_status_created_idx ON jobs (status, created_at DESC, event_id DESC);
-- Exactly-once submission: a unique constraint, not a read-then-write, decides.
CREATE UNIQUE INDEX jobs_idempotency_idx ON jobs (submitted_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE job_events (
    id         bigserial   PRIMARY KEY,
    event_id   uuid        NOT NULL REFERENCES jobs (event_id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    status     text        NOT NULL,
    attempts   integer     NOT NULL DEFAULT 0,
    reason     text,
    message    text
);
CREATE INDEX job_events_event_idx ON job_events (event_id, id);

CREATE TABLE operator_heartbeat (
    identity text        PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

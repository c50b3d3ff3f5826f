-- Webhooks (issue 13): a job's callback URL, the tenants' signing secrets, and the
-- durable outbox of deliveries the API's delivery worker works off.
-- depends: 0004.job-events

ALTER TABLE jobs ADD COLUMN callback_url text;

-- Standard Webhooks signing secrets (`whsec_<base64>`), per tenant. The current one has
-- no expiry; a rotation gives the old ones an `expires_at` (the grace period), and until
-- then every delivery is signed with each active secret.
CREATE TABLE webhook_secrets (
    id         bigserial   PRIMARY KEY,
    tenant     text        NOT NULL,
    secret     text        NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/=]+$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX webhook_secrets_tenant_idx ON webhook_secrets (tenant, id DESC);
-- At most one current (non-expiring) secret per tenant, also under concurrent rotations.
CREATE UNIQUE INDEX webhook_secrets_current_idx ON webhook_secrets (tenant)
    WHERE expires_at IS NULL;

-- One row per terminal state of a run of a job that has a callback URL. `job` is the
-- job's row as it was at that moment (so a delivery made late, after a retry started a
-- new run, still reports the outcome it was made for); `body` is the JSON sent, fixed at
-- the first attempt so every retry sends the same bytes under the same webhook_id.
CREATE TABLE webhook_deliveries (
    webhook_id      text        PRIMARY KEY,
    event_id        uuid        NOT NULL REFERENCES jobs (event_id) ON DELETE CASCADE,
    run             integer     NOT NULL,
    status          text        NOT NULL,
    url             text        NOT NULL,
    tenant          text        NOT NULL,
    job             jsonb       NOT NULL,
    body            text,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz DEFAULT now(),
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    UNIQUE (event_id, run)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';

-- The outbox is filled by a trigger, not by the code paths that finish a job: every writer
-- of a terminal state (the API's cancel, the dispatcher failing a job Kubernetes refused,
-- the operator's mirror, a deleted GuidelineJob) goes through an UPDATE of `jobs`, and the
-- delivery row commits in the same transaction as the state, or not at all. A retry's new
-- run reaching a terminal state again makes a new row (unique per event_id and run).
CREATE FUNCTION webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, run, status, url, tenant, job)
    VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), NEW.event_id, NEW.run,
            NEW.status, NEW.callback_url, NEW.tenant,
            to_jsonb(NEW) - 'guideline_text' - 'request_hash')
    ON CONFLICT (event_id, run) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_webhook_enqueue
    AFTER UPDATE OF status, run ON jobs
    FOR EACH ROW
    WHEN (NEW.callback_url IS NOT NULL
          AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
          AND (OLD.status IS DISTINCT FROM NEW.status OR OLD.run IS DISTINCT FROM NEW.run))
    EXECUTE FUNCTION webhook_enqueue();

-- Grounded checklists (issue 12): versions of a guideline, per-job review thresholds,
-- the needs-review listing, and the content-addressed cache of per-chunk summaries.
-- depends: 0002.intake-tenants

ALTER TABLE jobs ADD COLUMN supersedes uuid;
ALTER TABLE jobs ADD COLUMN review_thresholds jsonb;

-- GET /jobs?needs_review=true: newest first among the (few) results flagged for review.
CREATE INDEX jobs_needs_review_idx ON jobs (created_at DESC, event_id DESC)
    WHERE (result ->> 'needs_review') = 'true';

-- Written and read only by runner pods (which may only SELECT and INSERT it, see
-- docs/contracts.md); never updated: a row is the summary of one exact chunk text.
CREATE TABLE chunk_summaries (
    chunk_hash     text        NOT NULL CHECK (chunk_hash ~ '^[0-9a-f]{64}$'),
    model          text        NOT NULL,
    prompt_version text        NOT NULL,
    summary        text        NOT NULL,
    chunk_chars    integer     NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chunk_hash, model, prompt_version)
);

-- Stored changes (issue 23): `result.changes` of a COMPLETED job that supersedes another,
-- computed once by `db.mirror_state` when the job completes (and again for its waiting
-- superseders when a superseded job completes later), never on a read. NULL for a job
-- that supersedes nothing or has not completed.
-- depends: 0006.trace-context

ALTER TABLE jobs ADD COLUMN changes jsonb;

-- The superseders of a job that just completed, whose changes were not available yet.
CREATE INDEX jobs_supersedes_idx ON jobs (supersedes) WHERE supersedes IS NOT NULL;

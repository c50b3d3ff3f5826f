-- Progress while a job runs (issue 21). `jobs.progress`: the runner's latest
-- `status.progress` of the job's current run ({sections_done, sections_total, calls_done,
-- calls_total}), mirrored by the operator while the job is PROCESSING (the API shows it
-- only then). `job_events.progress`: set on the `progress` events of the job's event
-- stream (reason `Progress`, the row's status and attempts at that moment), so they share
-- the status events' ids and a stream resumes after either kind; NULL on status events.
-- depends: 0006.trace-context

ALTER TABLE jobs ADD COLUMN progress jsonb;
ALTER TABLE job_events ADD COLUMN progress jsonb;

-- The job event stream (issue 13): every row of `job_events` is one event of
-- GET /jobs/{event_id}/events, its `id` the SSE `id:`. The history is the stored part; a
-- NOTIFY on `guideline_job_events` (sent at commit, so never for a rolled-back change) wakes
-- the streams of every API replica.
-- depends: 0003.grounding

-- Which run (retry request) of the job an event belongs to; filled from the row below.
ALTER TABLE job_events ADD COLUMN run integer NOT NULL DEFAULT 0;

-- Writers insert (event_id, status, attempts, reason, message); the run is the row's.
CREATE FUNCTION job_events_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.run := coalesce((SELECT run FROM jobs WHERE event_id = NEW.event_id), NEW.run);
    RETURN NEW;
END $$;
CREATE TRIGGER job_events_fill BEFORE INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_fill();

-- Payload `<event_id> <id>`: a stream wakes only for its own job.
CREATE FUNCTION job_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('guideline_job_events', NEW.event_id::text || ' ' || NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_notify();

-- Every change of a job's status, attempts or run is an event, whoever wrote it: the
-- writers in db.py record one with its reason; this check, run at commit (deferred), adds
-- one (reason `StateChanged`) for a change that recorded none. It compares the row as it
-- is at commit, so a transaction that changed the row twice adds at most one event, after
-- the ones it recorded. The row lock the change took is still held: per job, event ids
-- follow commit order, so "every id after Last-Event-ID" has no gap.
CREATE FUNCTION jobs_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cur record;
BEGIN
    SELECT status, attempts, run INTO cur FROM jobs WHERE event_id = NEW.event_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM (SELECT status, attempts, run FROM job_events
                        WHERE event_id = NEW.event_id ORDER BY id DESC LIMIT 1) last
         WHERE last.status = cur.status AND last.attempts = cur.attempts AND last.run = cur.run
    ) THEN
        INSERT INTO job_events (event_id, status, attempts, reason)
        VALUES (NEW.event_id, cur.status, cur.attempts, 'StateChanged');
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER jobs_event_guard AFTER INSERT OR UPDATE OF status, attempts, run
    ON jobs DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION jobs_event_guard();

-- Text hygiene instead of refusal (issue 20): what the API knows of a job's document when it
-- accepts it, written at insert: {media_type, extractor, bytes, sha256, characters, warnings}
-- (the hygiene repairs, offsets into the submitted text). The job view shows it as
-- `document` and, once COMPLETED, as `result.document`. NULL for jobs made by kubectl.
-- depends: 0006.trace-context

ALTER TABLE jobs ADD COLUMN document jsonb;

-- The document store (issue 20): PostgreSQL, not etcd, holds what API clients submit. A
-- GuidelineJob made by the API carries `spec.documentRef` (id, sha256, media type, bytes),
-- and its runner pod fetches the bytes from the API (GET /v1/runner/jobs/{id}/document).
-- The bytes are kept in 1 MiB chunks, so neither a write nor a read holds a whole document
-- in memory. `jobs.guideline_text` is the job's text: the submitted text of a JSON
-- submission at once, the runner's extraction of an upload ('' until the runner puts it).
-- A document is deleted with its job's row (db.purge_finished).
-- depends: 0006.trace-context

CREATE TABLE documents (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    sha256 text NOT NULL,
    media_type text NOT NULL,
    bytes bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE document_chunks (
    document_id uuid REFERENCES documents ON DELETE CASCADE,
    seq int,
    data bytea NOT NULL,
    PRIMARY KEY (document_id, seq)
);
-- Chunks are compressed PDFs and DOCX zips most of the time: TOAST compression is wasted
-- work on them.
ALTER TABLE document_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

ALTER TABLE jobs ADD COLUMN document_id uuid REFERENCES documents;
CREATE INDEX jobs_document_id_idx ON jobs (document_id) WHERE document_id IS NOT NULL;

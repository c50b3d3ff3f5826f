-- Issue 23. The chunk cache by tenant: a summary is served only to jobs of the tenant
-- whose job stored it, so a hit no longer tells one tenant that another submitted the same
-- text, and a row planted for one tenant never reaches another's results. Rows are purged
-- by the operator `chunk_cache_retention_days` after they were written (created_at).
-- The rows of before had no tenant: they are dropped (that only costs LLM calls again).
-- depends: 0006.trace-context

DELETE FROM chunk_summaries;
ALTER TABLE chunk_summaries ADD COLUMN tenant text NOT NULL;
ALTER TABLE chunk_summaries DROP CONSTRAINT chunk_summaries_pkey;
ALTER TABLE chunk_summaries ADD PRIMARY KEY (tenant, chunk_hash, model, prompt_version);
CREATE INDEX chunk_summaries_created_at_idx ON chunk_summaries (created_at);

-- The API's text quota (tenant_max_inflight_text_bytes) sums the texts of a tenant's jobs
-- finished within the CR retention: a range of this index, not every finished row.
CREATE INDEX jobs_tenant_completed_idx ON jobs (tenant, completed_at)
    WHERE completed_at IS NOT NULL;

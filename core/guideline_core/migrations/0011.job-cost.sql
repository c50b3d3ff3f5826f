-- Cost, before and after (issue 21). `cost`: `result.usage.cost` of a COMPLETED job, computed
-- once by `db.mirror_state` when the job completes (its tokens at the price table of that
-- moment; NULL when the model has no price). `estimated_cost`: the submission's estimate
-- ({amount, currency}), stored when its tenant has a budget, so the budget check counts
-- the tenant's unfinished jobs. A tenant's spending in a period is read through
-- jobs_tenant_completed_idx (tenant, completed_at) of migration 0008.
-- depends: 0010.webhook-leases

ALTER TABLE jobs ADD COLUMN cost jsonb;
ALTER TABLE jobs ADD COLUMN estimated_cost jsonb;

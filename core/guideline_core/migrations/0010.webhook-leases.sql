-- Webhook delivery hardening (issue 23): which deliveries an attempt holds right now.
-- `leased_until` is set when an attempt claims the row (and renewed when its POST starts)
-- and cleared when the attempt is recorded, so a claim can count each tenant's attempts in
-- flight across every replica and cap them (`webhook_tenant_concurrency`): one tenant's
-- slow receivers cannot take all the delivery slots.
-- depends: 0006.trace-context

ALTER TABLE webhook_deliveries ADD COLUMN leased_until timestamptz;
CREATE INDEX webhook_deliveries_leased_idx ON webhook_deliveries (tenant)
    WHERE leased_until IS NOT NULL;
-- The claim walks the tenants with pending rows and takes each one's oldest due rows.
CREATE INDEX webhook_deliveries_tenant_due_idx ON webhook_deliveries (tenant, next_attempt_at)
    WHERE state = 'pending';

"""Webhooks: a job's outcome POSTed to its callback URL, signed as the Standard Webhooks
specification says, from a durable outbox in PostgreSQL (migration 0005)."""

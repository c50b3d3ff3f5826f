-- Tracing (issue 14): the W3C trace context of a job's submission span
-- (`{"traceparent": ..., "tracestate": ...}`), stored with the row at acceptance so the
-- dispatcher, which creates the GuidelineJob later, can put it in the CR's annotations.
-- NULL when the API had tracing off.
-- depends: 0005.webhooks

ALTER TABLE jobs ADD COLUMN trace_context jsonb;

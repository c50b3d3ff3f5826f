"""HTTP plumbing under the routes: the API-key gate, body and header limits, the RFC 9457
errors, and the event streams' caps."""

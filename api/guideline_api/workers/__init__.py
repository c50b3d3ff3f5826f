"""The API process's background loops: the dispatcher (outbox to Kubernetes), the webhook
delivery loop, the event hub (LISTEN/NOTIFY) and the health monitor."""

"""What `GET /health` reports, from the HealthMonitor's last snapshot (never a query of its
own). Error strings and the operator's identity only with `details` (an admin key): to
anyone else they would map the cluster's insides."""

from __future__ import annotations

from guideline_core.resource import Phase

from guideline_api.schemas.health import CheckResult, Health, OperatorHealth
from guideline_api.workers.monitor import Check, Snapshot


def _result(check: Check, details: bool) -> CheckResult:
    return CheckResult(
        ok=check.ok, latency_ms=check.latency_ms, error=check.error if details else None
    )


def report(snap: Snapshot, stale_seconds: float, details: bool) -> Health:
    """The health of the API's dependencies: `unavailable` without the database, `degraded`
    without Kubernetes or a live operator, else `ok`."""
    age = snap.age()
    operator = None
    if snap.database.ok:
        beat = snap.heartbeat
        beat_age = beat["age"] + age if beat else None
        operator = OperatorHealth(
            alive=beat_age is not None and beat_age <= stale_seconds,
            identity=beat["identity"] if beat and details else None,
            last_seen=beat["seen_at"] if beat else None,
            age_seconds=round(beat_age, 1) if beat_age is not None else None,
        )
    # PostgreSQL is the system of record: without it nothing is accepted. Without
    # Kubernetes submissions are still accepted (they wait in the outbox), so that is
    # degraded, not unavailable.
    if not snap.database.ok:
        status = "unavailable"
    elif not snap.kubernetes.ok or operator is None or not operator.alive:
        status = "degraded"
    else:
        status = "ok"
    counts = snap.counts or {}
    return Health(
        status=status,
        database=_result(snap.database, details),
        kubernetes=_result(snap.kubernetes, details),
        operator=operator,
        queue_size=counts.get(Phase.PENDING) if snap.counts else None,
        running=counts.get(Phase.PROCESSING) if snap.counts else None,
        figures_age_seconds=round(age, 3),
    )

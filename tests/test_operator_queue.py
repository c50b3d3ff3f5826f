"""The queue's index and its order, fairness and slots (`guideline_operator.queue`)."""

from __future__ import annotations

from typing import Any

from guideline_core import resource as gj
from guideline_core.resource import Phase
from guideline_operator import manifests, observe, queue
from support.operator_objects import condition, cr, job, ts


def body_of(name: str, created: float, event_id: str, **status: Any) -> dict[str, Any]:
    """An accepted GuidelineJob (status.eventId set) waiting in the queue."""
    body = cr(name=name, status={"phase": "PENDING", "eventId": event_id, **status})
    body["metadata"].update(
        uid=f"uid-{name}", creationTimestamp=ts(created), labels={gj.LABEL_EVENT_ID: event_id}
    )
    return body


def filled(*bodies: tuple[str, dict[str, Any]]) -> queue.Registry:
    registry = queue.Registry()
    for tenant, body in bodies:
        registry.upsert(body)
        registry.set_tenant(body["metadata"]["uid"], tenant)
    return registry


def admit(registry: queue.Registry, entry: queue.QueueEntry) -> None:
    """What the reconciler's admission write does to the registry."""
    body = body_of(entry.name, 0, entry.event_id, phase="PROCESSING", jobName=entry.job_name)
    body["metadata"]["resourceVersion"] = str(int(entry.resource_version) + 1)
    registry.upsert(body)


def test_queue_order_is_submission_order() -> None:
    registry = filled(
        ("t", body_of("a", 10, "0195-0003")),
        ("t", body_of("b", 5, "0195-0002")),
        ("t", body_of("c", 5, "0195-0001")),  # same second as b: event_id breaks the tie
        ("t", body_of("e", 0, "0195-0000", phase="COMPLETED")),
        (
            "t",
            cr(
                name="g",
                status={"phase": "PENDING", "eventId": "0195-0009"},
                **{gj.ANNOTATION_CANCEL_REQUESTED: ts(0)},
            ),
        ),
    )
    assert registry.waiting_count() == 3
    order = []
    while (entry := registry.next_waiting(lambda t: 0)) is not None:
        order.append(entry.name)
        admit(registry, entry)
    assert order == ["c", "b", "a"]
    assert registry.running() == 3 and registry.waiting_count() == 0


def test_unaccepted_or_unknown_tenant_jobs_are_not_admitted() -> None:
    registry = queue.Registry()
    registry.upsert(cr(name="new", status={}))  # not accepted yet: its pass accepts it first
    accepted = body_of("b", 0, "0195-0001")
    registry.upsert(accepted)  # no tenant recorded yet
    assert registry.next_waiting(lambda t: 0) is None
    registry.set_tenant("uid-b", "t")
    assert registry.next_waiting(lambda t: 0).name == "b"


def test_tenants_take_turns_whatever_one_has_queued() -> None:
    flood = [("flood", body_of(f"f{i}", i, f"0195-{i:05d}")) for i in range(2000)]
    registry = filled(*flood, ("small", body_of("s0", 5000, "0195-99999")))
    first = registry.next_waiting(lambda t: 0)
    admit(registry, first)
    second = registry.next_waiting(lambda t: 0)
    # Submitted last, started within one slot turnover.
    assert {first.name, second.name} == {"f0", "s0"}


def test_a_tenant_that_arrives_is_next_in_turn() -> None:
    registry = filled(*[("flood", body_of(f"f{i}", i, f"0195-{i:05d}")) for i in range(50)])
    admit(registry, registry.next_waiting(lambda t: 0))
    registry.upsert(body_of("s0", 100, "0195-99999"))
    registry.set_tenant("uid-s0", "small")
    assert registry.next_waiting(lambda t: 0).name == "s0"  # the very next free slot


def test_a_tenants_running_limit_holds_and_others_use_the_slots() -> None:
    registry = filled(
        *[("a", body_of(f"a{i}", i, f"0195-{i:04d}")) for i in range(5)],
        *[("b", body_of(f"b{i}", 100 + i, f"0195-1{i:03d}")) for i in range(5)],
    )
    limits = {"a": 1}
    started = []
    while (entry := registry.next_waiting(lambda t: limits.get(t, 0))) is not None:
        started.append(entry.name)
        admit(registry, entry)
    assert started.count("a0") == 1 and not any(n.startswith("a") and n != "a0" for n in started)
    assert registry.running("a") == 1 and registry.running("b") == 5


def test_retry_entry_waits_for_its_new_job() -> None:
    admitted_before = body_of("a", 0, "0195-0001", phase="FAILED", jobName="whatever")
    registry = filled(("t", admitted_before))
    assert registry.waiting_count() == 0 and registry.running() == 0
    retried = body_of("a", 0, "0195-0001", retryRequests=1, jobName=None)
    retried["metadata"]["resourceVersion"] = "200"
    registry.upsert(retried)
    [entry] = registry.snapshot()
    assert entry.job_name == manifests.job_name("a", "uid-a", 1) and entry.waiting
    assert registry.next_waiting(lambda t: 0).name == "a"


def test_registry_ignores_a_stale_watch_event() -> None:
    registry = queue.Registry()
    newer = cr(status={"phase": "PROCESSING"})
    newer["metadata"]["resourceVersion"] = "120"
    older = cr(status={"phase": "PENDING"})
    older["metadata"]["resourceVersion"] = "110"
    registry.upsert(newer)
    registry.upsert(older)
    [only] = registry.snapshot()
    assert only.phase == Phase.PROCESSING
    registry.remove(only.uid)
    assert len(registry) == 0


def test_job_slots() -> None:
    assert observe.job_active(job())
    assert not observe.job_active(job(suspend=True))
    assert not observe.job_active(job(conditions=[condition("Complete")]))
    assert not observe.job_active(job(conditions=[condition("Failed", "BackoffLimitExceeded")]))
    assert observe.job_active(job(conditions=[condition("FailureTarget")]))  # pods still ending

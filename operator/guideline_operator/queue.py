"""The queue of GuidelineJobs waiting for a free slot: an in-memory view of the CRs and
the pure functions that order it and decide what to admit.

The queue itself is durable: it is the set of GuidelineJobs in phase PENDING whose Job does
not exist yet, so nothing is lost when the operator restarts. `Registry` is only a cheap,
watch-fed copy of the few fields the admission pass needs (listing the CRs themselves
would transfer every guideline text, up to 100,000 characters each, on every pass).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from guideline_core.kube import event_id_of
from guideline_core.resource import ConditionType, Phase

from guideline_operator import manifests, observe

_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class QueueEntry:
    """What the admission pass needs to know about one GuidelineJob."""

    namespace: str
    name: str
    uid: str
    event_id: str
    created: datetime
    phase: Phase | None = None
    run: int = 0
    status_job_name: str | None = None
    cancel_requested: bool = False
    deleting: bool = False
    queue_position: int | None = None
    queued_message: str | None = None
    queued: bool = False
    conditions: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)
    generation: int | None = None
    resource_version: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return (self.namespace, self.name)

    @property
    def job_name(self) -> str:
        """The name of the current run's Job."""
        return manifests.job_name(self.name, self.run)

    @property
    def admitted(self) -> bool:
        """True if the operator already admitted the current run (its Job may be missing
        only because creating it failed or is in flight)."""
        return self.status_job_name == self.job_name


def entry_from_body(body: Mapping[str, Any]) -> QueueEntry:
    """A QueueEntry from a GuidelineJob body."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    queued = observe.get_condition(body, ConditionType.QUEUED) or {}
    return QueueEntry(
        namespace=metadata.get("namespace") or "",
        name=metadata["name"],
        uid=metadata.get("uid") or "",
        event_id=event_id_of(dict(body)) if metadata.get("uid") else "",
        created=observe.parse_time(metadata.get("creationTimestamp")) or _EPOCH,
        phase=observe.phase_of(body),
        run=observe.current_run(body),
        status_job_name=status.get("jobName"),
        cancel_requested=observe.cancel_requested(body),
        deleting=bool(metadata.get("deletionTimestamp")),
        queue_position=status.get("queuePosition"),
        queued_message=queued.get("message"),
        queued=queued.get("status") == "True",
        conditions=tuple(dict(c) for c in status.get("conditions") or []),
        generation=metadata.get("generation"),
        resource_version=metadata.get("resourceVersion") or "",
    )


def order_key(entry: QueueEntry) -> tuple[int, datetime, str]:
    """Submission order: already-admitted runs first (their Job is only missing), then by
    creationTimestamp, then by event_id (UUIDv7, so also time-ordered) to break ties."""
    return (0 if entry.admitted else 1, entry.created, entry.event_id)


def waiting(entries: Iterable[QueueEntry], existing_jobs: set[tuple[str, str]]) -> list[QueueEntry]:
    """The GuidelineJobs waiting for a slot, in the order they get one: not finished, not
    cancelled or being deleted, and without a Job for their current run."""
    result = [
        e
        for e in entries
        if e.phase in (None, Phase.PENDING)
        and not e.cancel_requested
        and not e.deleting
        and (e.namespace, e.job_name) not in existing_jobs
    ]
    return sorted(result, key=order_key)


def plan(queue: Sequence[QueueEntry], running: int, limit: int) -> tuple[int, list[QueueEntry]]:
    """How many slots are free, and which entries (a prefix of the queue) to admit."""
    free = max(0, limit - running)
    return free, list(queue[:free])


def _older(candidate: str, known: str) -> bool:
    # resourceVersions are opaque to clients, but this API server's are etcd revisions;
    # comparing them only avoids a moment of staleness, correctness never depends on it.
    return candidate.isdigit() and known.isdigit() and int(candidate) < int(known)


class Registry:
    """A thread-safe map uid -> QueueEntry, fed by the watch and by the operator's writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, QueueEntry] = {}

    def upsert(self, body: Mapping[str, Any]) -> QueueEntry | None:
        """Record the latest state of a GuidelineJob body (ignored without a uid)."""
        if not (body.get("metadata") or {}).get("uid"):
            return None
        entry = entry_from_body(body)
        with self._lock:
            known = self._entries.get(entry.uid)
            if known is not None and _older(entry.resource_version, known.resource_version):
                return known  # a watch event that our own write has already overtaken
            self._entries[entry.uid] = entry
        return entry

    def remove(self, uid: str) -> None:
        """Forget a deleted GuidelineJob."""
        with self._lock:
            self._entries.pop(uid, None)

    def snapshot(self) -> list[QueueEntry]:
        """Every entry, as of now."""
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

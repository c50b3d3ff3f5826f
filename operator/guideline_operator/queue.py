"""The queue of GuidelineJobs waiting for a free slot: a watch-fed, in-memory index of the
CRs that answers "which job gets the next slot" and "how many slots are taken" in time that
does not grow with the queue.

The queue itself is durable: it is the set of accepted GuidelineJobs in phase PENDING whose
current run was not admitted yet (status.jobName), so nothing is lost when the operator
restarts. `Registry` only indexes a few fields of each CR (listing the CRs would transfer
every guideline text, up to 100,000 characters each):

- per tenant, a heap of waiting jobs in submission order (lazy deletion: an entry that left
  the queue is dropped when it reaches the top), and the set of its admitted jobs;
- fairness: tenants take turns (round-robin over the tenants with waiting jobs), each
  within its own running limit, so one tenant's job starts within one slot turnover
  whatever another tenant has queued.

Every update is O(log n) for the entry it concerns; choosing the next job is O(tenants).
The tenant of a job is the one its database row records, given by the operator
(`set_tenant`), never a label of the CR.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from guideline_core.guidelinejob import GuidelineJob, metadata_of, status_of
from guideline_core.resource import Phase

from guideline_operator import manifests, observe

_EPOCH = datetime.min.replace(tzinfo=UTC)
OrderKey = tuple[datetime, str]


@dataclass(frozen=True)
class QueueEntry:
    """What the admission pass needs to know about one GuidelineJob."""

    namespace: str
    name: str
    uid: str
    event_id: str  # status.eventId: set by the operator when it accepted the CR
    created: datetime
    phase: Phase | None = None
    run: int = 0
    status_job_name: str | None = None
    cancel_requested: bool = False
    deleting: bool = False
    resource_version: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return (self.namespace, self.name)

    @property
    def job_name(self) -> str:
        """The name of the current run's Job."""
        return manifests.job_name(self.name, self.uid, self.run)

    @property
    def admitted(self) -> bool:
        """True if the operator admitted the current run (it holds a slot until it ends)."""
        return self.status_job_name == self.job_name

    @property
    def waiting(self) -> bool:
        """True while the job waits for a slot: accepted, PENDING, not admitted, not
        cancelled or being deleted."""
        return (
            self.phase == Phase.PENDING
            and bool(self.event_id)
            and not self.admitted
            and not self.cancel_requested
            and not self.deleting
        )

    @property
    def holds_slot(self) -> bool:
        """True while the admitted run is not finished (its Job runs or is being made)."""
        return (
            self.admitted
            and self.phase is not None
            and not self.phase.terminal
            and not self.deleting
        )

    @property
    def order(self) -> OrderKey:
        """Submission order: creationTimestamp, then event_id (UUIDv7, time-ordered)."""
        return (self.created, self.event_id)


def entry_from_body(body: GuidelineJob) -> QueueEntry:
    """A QueueEntry from a GuidelineJob body."""
    metadata = metadata_of(body)
    status = status_of(body)
    return QueueEntry(
        namespace=metadata.get("namespace") or "",
        name=metadata["name"],
        uid=metadata.get("uid") or "",
        event_id=status.get("eventId") or "",
        created=observe.parse_time(metadata.get("creationTimestamp")) or _EPOCH,
        phase=observe.phase_of(body),
        run=observe.current_run(body),
        status_job_name=status.get("jobName"),
        cancel_requested=observe.cancel_requested(body),
        deleting=bool(metadata.get("deletionTimestamp")),
        resource_version=metadata.get("resourceVersion") or "",
    )


def _older(candidate: str, known: str) -> bool:
    # resourceVersions are opaque to clients, but this API server's are etcd revisions;
    # comparing them only avoids a moment of staleness, correctness never depends on it.
    return candidate.isdigit() and known.isdigit() and int(candidate) < int(known)


class Registry:
    """A thread-safe index uid -> QueueEntry with the per-tenant queues (module docs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, QueueEntry] = {}
        self._tenant_of: dict[str, str] = {}  # uid -> tenant (from the job's row)
        self._heaps: dict[str, list[tuple[OrderKey, str]]] = {}
        self._pushed: dict[str, OrderKey] = {}  # uid -> the key it sits in its heap with
        self._waiting: dict[str, set[str]] = {}  # tenant -> uids waiting
        self._running: dict[str, set[str]] = {}  # tenant -> uids holding a slot
        self._running_total = 0
        self._waiting_total = 0
        self._turns: list[str] = []  # tenants in the order they take turns
        self._cursor = 0

    # --- updates ---------------------------------------------------------------------------

    def upsert(self, body: GuidelineJob) -> QueueEntry | None:
        """Record the latest state of a GuidelineJob body (ignored without a uid)."""
        if not (body.get("metadata") or {}).get("uid"):
            return None
        entry = entry_from_body(body)
        with self._lock:
            known = self._entries.get(entry.uid)
            if known is not None and _older(entry.resource_version, known.resource_version):
                return known  # a watch event that our own write has already overtaken
            self._entries[entry.uid] = entry
            self._reindex(entry.uid)
        return entry

    def set_tenant(self, uid: str, tenant: str) -> None:
        """Record the tenant of a GuidelineJob (the one its database row says)."""
        with self._lock:
            if self._tenant_of.get(uid) == tenant:
                return
            self._unindex(uid)
            self._tenant_of[uid] = tenant
            self._reindex(uid)

    def tenant(self, uid: str) -> str | None:
        """The tenant recorded for a GuidelineJob, if known."""
        with self._lock:
            return self._tenant_of.get(uid)

    def remove(self, uid: str) -> None:
        """Forget a deleted GuidelineJob."""
        with self._lock:
            self._unindex(uid)
            self._entries.pop(uid, None)
            self._tenant_of.pop(uid, None)

    def _unindex(self, uid: str) -> None:
        tenant = self._tenant_of.get(uid)
        if tenant is None:
            return
        if uid in self._waiting.get(tenant, ()):
            self._waiting[tenant].discard(uid)
            self._waiting_total -= 1
        if uid in self._running.get(tenant, ()):
            self._running[tenant].discard(uid)
            self._running_total -= 1
        self._pushed.pop(uid, None)  # its heap item is now stale

    def _reindex(self, uid: str) -> None:
        entry, tenant = self._entries.get(uid), self._tenant_of.get(uid)
        if entry is None or tenant is None:
            return
        waiting, running = (
            self._waiting.setdefault(tenant, set()),
            self._running.setdefault(tenant, set()),
        )
        if entry.waiting:
            if uid not in waiting:
                waiting.add(uid)
                self._waiting_total += 1
            if self._pushed.get(uid) != entry.order:
                self._pushed[uid] = entry.order
                heapq.heappush(self._heaps.setdefault(tenant, []), (entry.order, uid))
            if tenant not in self._turns:
                # A tenant that had nothing waiting is next in turn: its job gets the next
                # free slot, however many the others have queued.
                self._turns.insert(self._cursor, tenant)
        elif uid in waiting:
            waiting.discard(uid)
            self._waiting_total -= 1
            self._pushed.pop(uid, None)
        if entry.holds_slot:
            if uid not in running:
                running.add(uid)
                self._running_total += 1
        elif uid in running:
            running.discard(uid)
            self._running_total -= 1

    # --- reads ---------------------------------------------------------------------------

    def _head(self, tenant: str) -> QueueEntry | None:
        heap = self._heaps.get(tenant) or []
        while heap:
            key, uid = heap[0]
            entry = self._entries.get(uid)
            if (
                entry is not None
                and uid in self._waiting.get(tenant, ())
                and self._pushed.get(uid) == key
            ):
                return entry
            heapq.heappop(heap)  # stale: it left the queue or moved
        return None

    def next_waiting(
        self,
        limit_for: Callable[[str], int],
        skip: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> QueueEntry | None:
        """The job that gets the next free slot: the oldest waiting job of the next tenant
        in turn that is below its running limit (`limit_for(tenant)`, 0 = none); None if
        no tenant can start one. Entries in `skip` (uids) are passed over. Takes the turn."""
        with self._lock:
            count = len(self._turns)
            for step in range(count):
                index = (self._cursor + step) % count
                tenant = self._turns[index]
                limit = limit_for(tenant)
                if limit and len(self._running.get(tenant, ())) >= limit:
                    continue
                entry = self._head(tenant)
                if entry is not None and entry.uid in skip:
                    entry = self._oldest_not_in(tenant, skip)
                if entry is None:
                    continue
                self._cursor = (index + 1) % count
                return entry
            self._turns = [t for t in self._turns if self._waiting.get(t)]
            self._cursor = 0
            return None

    def _oldest_not_in(self, tenant: str, skip: set[str]) -> QueueEntry | None:
        # Rare (an admission that just failed): a scan of that tenant's waiting jobs.
        candidates = [self._entries[u] for u in self._waiting.get(tenant, ()) if u not in skip]
        return min(candidates, key=lambda e: e.order, default=None)

    def running(self, tenant: str | None = None) -> int:
        """Admitted jobs that hold a slot (of one tenant, or all)."""
        with self._lock:
            if tenant is None:
                return self._running_total
            return len(self._running.get(tenant, ()))

    def waiting_count(self) -> int:
        """Jobs waiting for a slot."""
        with self._lock:
            return self._waiting_total

    def get(self, uid: str) -> QueueEntry | None:
        """The entry of one GuidelineJob."""
        with self._lock:
            return self._entries.get(uid)

    def snapshot(self) -> list[QueueEntry]:
        """Every entry, as of now."""
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

"""The caps on open job event streams, per API process: per key, per tenant and in all.

uvicorn's `limit_concurrency` counts every open stream as a connection and a task, so
without these a single key could hold every slot and the probes would get 503. A stream
takes a slot before its response starts (a refusal is a 429 `too_many_streams` with
Retry-After) and gives it back however it ends; `StreamCaps.release` is idempotent. The
counts live in this process: N replicas admit N times as many streams.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from guideline_core.settings import ApiSettings

from guideline_api.auth import Principal
from guideline_api.http.errors import ApiError, Reason

# A refused client waits this long: streams end by themselves (terminal event, lifetime).
RETRY_AFTER_SECONDS = 10


@dataclass
class StreamSlot:
    """One open stream's share of the caps, until released."""

    key_id: str
    tenant: str
    released: bool = field(default=False)


class StreamCaps:
    """Counts the open streams of each key and tenant and in all (thread-safe)."""

    def __init__(self, settings: ApiSettings, on_refuse: Callable[[str], None] | None = None):
        self._settings = settings
        self._on_refuse = on_refuse
        self._lock = threading.Lock()
        self._by_key: Counter[str] = Counter()
        self._by_tenant: Counter[str] = Counter()
        self._total = 0

    def open_count(self) -> int:
        """Streams holding a slot right now."""
        return self._total

    def acquire(self, principal: Principal) -> StreamSlot:
        """A slot for one more stream of `principal`; ApiError 429 at any cap (`on_refuse`
        is told which: key, tenant or process)."""
        key_cap = self._settings.sse_max_streams_per_key
        tenant_cap = self._settings.limits_for(principal.tenant).max_event_streams
        process_cap = self._settings.stream_capacity
        with self._lock:
            if self._by_key[principal.key_id] >= key_cap:
                refused = ("key", f"API key {principal.key_id!r} has", key_cap)
            elif tenant_cap is not None and self._by_tenant[principal.tenant] >= tenant_cap:
                refused = ("tenant", f"tenant {principal.tenant!r} has", tenant_cap)
            elif process_cap is not None and self._total >= process_cap:
                refused = ("process", "this API process has", process_cap)
            else:
                self._by_key[principal.key_id] += 1
                self._by_tenant[principal.tenant] += 1
                self._total += 1
                return StreamSlot(principal.key_id, principal.tenant)
        cap, who, limit = refused
        if self._on_refuse is not None:
            self._on_refuse(cap)
        raise ApiError(
            429,
            Reason.TOO_MANY_STREAMS,
            f"{who} {limit} event streams open, the most allowed; close one or retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    def release(self, slot: StreamSlot) -> None:
        """Give the slot back (a second call does nothing)."""
        with self._lock:
            if slot.released:
                return
            slot.released = True
            for counts, name in ((self._by_key, slot.key_id), (self._by_tenant, slot.tenant)):
                counts[name] -= 1
                if counts[name] <= 0:
                    del counts[name]
            self._total -= 1

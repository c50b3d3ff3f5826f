"""A job's progress while the chain runs: how many checklist sections and provider calls
are done of how many, counted by the chain (`Progress`) and published to the
GuidelineJob's `status.progress` by a background thread (`Publisher`): at most once per
interval while calls finish, and at once at the end of each round of calls, so a long
job does not cost one Kubernetes write per LLM call.

The counts are the chain's own: `calls_total` is what the chain plans so far (the map
step's parts not in the cache, each round of combine calls once the round is formed, one
checklist call per section not kept from an earlier attempt; the extractive provider's
two steps count as one call each), so it grows while the summary's rounds of combining
are formed; `sections_total` is known from the start."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """The counts at one moment (the body of `status.progress`)."""

    sections_done: int = 0
    sections_total: int = 0
    calls_done: int = 0
    calls_total: int = 0

    def to_status(self) -> dict[str, int]:
        """The body of `status.progress`."""
        return asdict(self)


class Progress:
    """Thread-safe counts of one chain run. `on_change(snapshot, round_end)` is called
    after every change, under the lock so that snapshots arrive in order (it must be
    quick: a `Publisher.offer`)."""

    def __init__(self, on_change: Callable[[Snapshot, bool], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._now = Snapshot()
        self._on_change = on_change

    def _update(self, round_end: bool = False, **added: int) -> None:
        with self._lock:
            counts = asdict(self._now)
            for name, value in added.items():
                counts[name] += value
            self._now = Snapshot(**counts)
            if self._on_change is not None:
                self._on_change(self._now, round_end)

    def plan(self, calls: int = 0, sections: int = 0) -> None:
        """More calls (and sections) the chain will make."""
        self._update(calls_total=calls, sections_total=sections)

    def call_done(self, sections: int = 0) -> None:
        """A call was answered (and with it `sections` sections are done)."""
        self._update(calls_done=1, sections_done=sections)

    def sections_done(self, count: int) -> None:
        """Sections done without a call (their answer kept from an earlier attempt)."""
        self._update(sections_done=count)

    def round_done(self) -> None:
        """A round of calls ended: publish now."""
        self._update(round_end=True)

    def snapshot(self) -> Snapshot:
        """The counts now."""
        with self._lock:
            return self._now


class Publisher:
    """Publishes the latest offered snapshot through `publish` from its own thread (so a
    slow or failing write never holds up an LLM call): at most once per `interval`
    seconds, or at once when a round ends; nothing during the first `interval` seconds (a
    run that short needs no progress: its result follows at once, and it costs no write).
    A snapshot equal to the last published one is not published again; a failed write is
    logged and left to the next one. Closing publishes the last counts of a run that
    published before."""

    def __init__(
        self,
        publish: Callable[[Snapshot], None],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._interval = interval
        self._clock = clock
        self._cond = threading.Condition()
        self._latest: Snapshot | None = None
        self._sent: Snapshot | None = None
        self._now = False  # a round ended: do not wait for the interval
        self._quiet_until = clock() + interval  # no write before
        self._last = float("-inf")
        self._closed = False
        self.published = 0
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()

    def offer(self, snapshot: Snapshot, round_end: bool = False) -> None:
        """The counts changed (`Progress`'s `on_change`)."""
        with self._cond:
            self._latest = snapshot
            self._now = self._now or round_end
            self._cond.notify()

    def _next(self) -> Snapshot | None:
        """Wait for the next snapshot due (None: closed)."""
        with self._cond:
            while not self._closed:
                if self._latest is None or self._latest == self._sent:
                    self._now = False
                    self._cond.wait()
                    continue
                now = self._clock()
                left = 0.0 if self._now else self._last + self._interval - now
                left = max(left, self._quiet_until - now)
                if left <= 0:
                    self._now = False
                    self._last = self._clock()
                    self._sent = self._latest
                    return self._latest
                self._cond.wait(left)
            if self._sent is not None and self._latest != self._sent:
                self._sent = self._latest  # closed: the last counts, once
                return self._latest
            return None

    def _run(self) -> None:
        while (snapshot := self._next()) is not None:
            try:
                self._publish(snapshot)
                self.published += 1
            except Exception as exc:  # progress is informative only
                log.warning("could not publish the progress", extra={"error": str(exc)})

    def close(self, timeout: float = 5.0) -> None:
        """Publish the last counts if they are not yet (and anything was), then stop
        (waiting at most `timeout` seconds: the result's write follows, whatever this one
        does)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

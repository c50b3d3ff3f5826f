"""The webhook delivery worker (one per API process, an `outbox.OutboxWorker`): claims due
deliveries as delivery slots free up, POSTs each job's JSON (what `GET /jobs/{event_id}`
shows for it) to its callback URL, signed with the tenant's active secrets, and records the
outcome: a 2xx is delivered; anything else (another status, a refused connection, a
dropped one, a timeout, the attempt's deadline, a target refused at delivery time) is
tried again with exponential backoff and jitter, under the same `webhook-id`, until
`webhook_max_age_seconds` after the job finished.

One slow receiver holds one slot, never the worker: each attempt runs on its own thread
under a wall-clock deadline (`webhook_attempt_deadline_seconds`, enforced by cancelling
the request, whatever its per-read timeouts say), the worker claims again whenever an
attempt ends rather than waiting for a batch, and the claim caps each tenant's attempts
in flight (`webhook_tenant_concurrency`) so other tenants' deliveries keep going out.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

import httpx
from guideline_core import db, logs
from guideline_core.db import DatabaseUnavailableError
from guideline_core.db import webhooks as store
from guideline_core.settings import ApiSettings

from guideline_api.metrics import ApiMetrics
from guideline_api.service.versions import with_changes
from guideline_api.service.views import to_view
from guideline_api.webhooks import signing, targets
from guideline_api.workers.outbox import OutboxWorker, backoff_delay

log = logging.getLogger(__name__)
USER_AGENT = "guideline-ingest-webhooks"
# How much longer than its deadline an attempt's lease runs: the lease is renewed as the
# POST starts, so this covers only the recording of the outcome afterwards.
LEASE_MARGIN_SECONDS = 15.0
# How often the worker deletes signing secrets whose grace period has ended.
SECRET_PURGE_SECONDS = 60.0


def render(conn: Any, job: dict[str, Any]) -> str:
    """The body of a delivery: the job as `GET /jobs/{event_id}` shows it, from the row
    as it was when the job reached the terminal state."""
    view = to_view(with_changes(conn, job))
    return json.dumps(view.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)


class DeliveryWorker(OutboxWorker):
    """Delivers the webhook outbox; `wake()` after a commit that finished a job."""

    name = "webhooks"

    def __init__(self, store_db: db.Database, settings: ApiSettings, metrics: ApiMetrics):
        super().__init__(
            batch_size=settings.webhook_batch_size,
            concurrency=settings.webhook_concurrency,
            poll_seconds=settings.webhook_poll_seconds,
        )
        self._db = store_db
        self._settings = settings
        self._metrics = metrics
        self._deadline = settings.webhook_attempt_deadline_seconds
        self._lease = self._deadline + LEASE_MARGIN_SECONDS
        self._tls = httpx.create_ssl_context(trust_env=False)  # built once, shared
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()
        self._next_purge = 0.0  # monotonic time of the next purge of expired secrets

    def claim(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Lease up to `limit` (default: the batch size) due deliveries, fairly by tenant."""
        with self._db.connection() as conn:
            return store.claim_deliveries(
                conn,
                limit or self._batch_size,
                self._lease,
                self._settings.webhook_tenant_concurrency,
            )

    def release(self, rows: list[dict[str, Any]]) -> None:
        """Claimed deliveries this process will not attempt (it is stopping): due again now,
        their attempt not counted."""
        with self._db.connection() as conn:
            for row in rows:
                store.release_claim(conn, row["webhook_id"], int(row["attempts"]))

    def run_once(self) -> int:
        """Claim as many due deliveries as there are free slots and start their attempts,
        without waiting for them (an attempt that ends wakes the worker to claim again);
        returns how many were claimed. Not started: one batch, attempted here."""
        self._purge_expired_secrets()
        if self._workers is None:
            rows = self.claim()
            for row in rows:
                self.handle(row)
            return len(rows)
        with self._in_flight_lock:
            free = self._concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        rows = self.claim(min(free, self._batch_size))
        for index, row in enumerate(rows):
            with self._in_flight_lock:
                self._in_flight.add(row["webhook_id"])
            try:
                future = self._workers.submit(self.handle, row)
            except RuntimeError:  # stopped between the claim and the hand-over
                with self._in_flight_lock:
                    self._in_flight.difference_update(r["webhook_id"] for r in rows[index:])
                self._release_quietly(rows[index:])
                break
            future.add_done_callback(functools.partial(self._attempt_ended, row))
        return len(rows)

    def _purge_expired_secrets(self) -> None:
        """Housekeeping, once a minute: expired secrets sign nothing; none stays stored."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + SECRET_PURGE_SECONDS
        with self._db.connection() as conn:
            purged = store.purge_expired_secrets(conn)
        if purged:
            log.info("expired webhook secrets deleted", extra={"count": purged})

    def _attempt_ended(self, row: dict[str, Any], done: Future[None]) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(row["webhook_id"])
        if done.cancelled():  # the worker stopped before the attempt began
            self._release_quietly([row])
        elif done.exception() is not None:
            log.warning(
                "webhook attempt not recorded (its lease ends, then it is made again)",
                extra={"webhook_id": row["webhook_id"], "error": str(done.exception())},
            )
        self.wake()

    def _release_quietly(self, rows: list[dict[str, Any]]) -> None:
        try:
            self.release(rows)
        except Exception:
            log.exception("webhooks: claimed deliveries not released (their lease ends)")

    def handle(self, row: dict[str, Any]) -> None:
        """Make one attempt of one delivery and record it."""
        with logs.bind(event_id=str(row["event_id"])):
            try:
                target = targets.resolve(row["url"], self._settings.webhook_allow_private)
            except targets.TargetRefusedError as exc:
                log.warning(
                    "webhook target refused at delivery",
                    extra={"webhook_id": row["webhook_id"], "error": exc.detail},
                )
                self._record(row, None, f"callback_url {exc}")
                return
            try:
                with self._db.connection() as conn:
                    body = row["body"] or store.set_body(
                        conn, row["webhook_id"], render(conn, row["job"])
                    )
                    active = [s["secret"] for s in store.ensure_secret(conn, row["tenant"])]
                    held = store.renew_lease(
                        conn, row["webhook_id"], int(row["attempts"]), self._lease
                    )
            except DatabaseUnavailableError:
                raise  # nothing can be recorded: the lease ends and the attempt is made again
            except Exception as exc:
                # A failed attempt like any other, so that it ends within the max age.
                log.exception("webhook delivery could not be prepared")
                self._record(row, None, f"internal error preparing the delivery: {exc}")
                return
            if not held:
                log.warning(
                    "webhook attempt not made: its lease ended and another attempt holds it",
                    extra={"webhook_id": row["webhook_id"], "attempt": row["attempts"]},
                )
                return
            code, error = self._post(target, row["webhook_id"], body.encode("utf-8"), active)
            self._record(row, code, error)

    def _post(
        self, target: targets.Target, webhook_id: str, body: bytes, active: list[str]
    ) -> tuple[int | None, str | None]:
        """POST `body` within the attempt's deadline; (HTTP status or None, error or None:
        delivered)."""
        headers = {
            **signing.headers(active, webhook_id, int(time.time()), body),
            "Content-Type": "application/json",
            "Host": target.host_header(),
        }
        try:
            code = asyncio.run(asyncio.wait_for(self._send(target, body, headers), self._deadline))
        except TimeoutError:
            return None, f"DeadlineExceeded: no answer within {self._deadline:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= code < 300:
            return code, None
        return code, f"HTTP {code}"

    async def _send(self, target: targets.Target, body: bytes, headers: dict[str, str]) -> int:
        """The status of the answer (its body is not read). Cancelled at the deadline: a
        receiver that trickles bytes keeps each per-read timeout alive, not the attempt."""
        async with (
            httpx.AsyncClient(
                verify=self._tls,
                timeout=self._settings.webhook_timeout_seconds,
                follow_redirects=False,
                trust_env=False,
                # No kept-alive connection: a pooled one is keyed by the address alone, and
                # two hosts on one address must not share a TLS session verified for one.
                limits=httpx.Limits(max_keepalive_connections=0),
                headers={"User-Agent": USER_AGENT},
            ) as client,
            # The checked address, not a new lookup (DNS may answer differently now);
            # TLS still verifies the certificate for the URL's host name.
            client.stream(
                "POST",
                target.pinned_url(),
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.host},
            ) as response,
        ):
            return response.status_code

    def _record(self, row: dict[str, Any], code: int | None, error: str | None) -> None:
        attempt = int(row["attempts"])
        delay = backoff_delay(
            attempt,
            self._settings.webhook_backoff_base_seconds,
            self._settings.webhook_max_backoff_seconds,
        )
        with self._db.connection() as conn:
            state = store.finish_attempt(
                conn,
                row["webhook_id"],
                attempt,
                status_code=code,
                error=error,
                retry_in=delay,
                max_age_seconds=self._settings.webhook_max_age_seconds,
            )
        self._metrics.webhook_deliveries.labels("delivered" if error is None else "failed").inc()
        extra = {"webhook_id": row["webhook_id"], "attempt": attempt, "http_status": code}
        if error is None:
            log.info("webhook delivered", extra=extra)
        elif state == "failed":
            self._metrics.webhook_abandoned.inc()
            log.error("webhook delivery given up", extra={**extra, "error": error})
        else:
            log.warning(
                "webhook delivery failed; retrying",
                extra={**extra, "error": error, "retry_in_s": round(delay, 2)},
            )

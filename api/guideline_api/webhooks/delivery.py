"""The webhook delivery worker (one per API process, an `outbox.OutboxWorker`): claims due
deliveries, POSTs each job's JSON (what `GET /jobs/{event_id}` shows for it) to its
callback URL, signed with the tenant's active secrets, and records the outcome: a 2xx is
delivered; anything else (another status, a refused connection, a dropped one, a timeout,
a target refused at delivery time) is tried again with exponential backoff and jitter,
under the same `webhook-id`, until `webhook_max_age_seconds` after the job finished.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import httpx
from guideline_core import db, logs
from guideline_core.db import DatabaseUnavailableError
from guideline_core.settings import ApiSettings

from guideline_api.metrics import ApiMetrics
from guideline_api.outbox import OutboxWorker, backoff_delay
from guideline_api.versions import with_changes
from guideline_api.views import to_view
from guideline_api.webhooks import signing, store, targets

log = logging.getLogger(__name__)
USER_AGENT = "guideline-ingest-webhooks"


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
        # Longer than a whole batch can take (its attempts run `concurrency` at a time, each
        # at most a connect, a write and a read timeout), so no replica claims a row while
        # its attempt is under way.
        rounds = math.ceil(settings.webhook_batch_size / settings.webhook_concurrency)
        self._lease = rounds * (3 * settings.webhook_timeout_seconds + 5) + 10
        self._http = httpx.Client(
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
            trust_env=False,
            # No kept-alive connections: a pooled one is keyed by the address alone, and two
            # hosts on one address must not share a TLS session verified for one of them.
            limits=httpx.Limits(
                max_connections=settings.webhook_concurrency, max_keepalive_connections=0
            ),
            headers={"User-Agent": USER_AGENT},
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker and close its connections."""
        super().stop(timeout)
        self._http.close()

    def claim(self) -> list[dict[str, Any]]:
        """Lease one batch of due deliveries."""
        with self._db.connection() as conn:
            return store.claim_deliveries(conn, self._settings.webhook_batch_size, self._lease)

    def release(self, rows: list[dict[str, Any]]) -> None:
        """Claimed deliveries this process will not attempt (it is stopping): due again now,
        their attempt not counted."""
        with self._db.connection() as conn:
            for row in rows:
                store.release_claim(conn, row["webhook_id"], int(row["attempts"]))

    def handle(self, row: dict[str, Any]) -> None:
        """Make one attempt of one delivery and record it."""
        with logs.bind(event_id=str(row["event_id"])):
            try:
                with self._db.connection() as conn:
                    body = row["body"] or store.set_body(
                        conn, row["webhook_id"], render(conn, row["job"])
                    )
                    active = [s["secret"] for s in store.ensure_secret(conn, row["tenant"])]
            except DatabaseUnavailableError:
                raise  # nothing can be recorded: the lease ends and the attempt is made again
            except Exception as exc:
                # A failed attempt like any other, so that it ends within the max age.
                log.exception("webhook delivery could not be prepared")
                self._record(row, None, f"internal error preparing the delivery: {exc}")
                return
            code, error = self._post(row, body.encode("utf-8"), active)
            self._record(row, code, error)

    def _post(
        self, row: dict[str, Any], body: bytes, active: list[str]
    ) -> tuple[int | None, str | None]:
        """POST `body`; (HTTP status or None, error or None: delivered)."""
        try:
            target = targets.resolve(row["url"], self._settings.webhook_allow_private)
        except targets.TargetRefusedError as exc:
            return None, f"callback_url refused: {exc}"
        headers = {
            **signing.headers(active, row["webhook_id"], int(time.time()), body),
            "Content-Type": "application/json",
            "Host": target.host_header(),
        }
        try:
            # The checked address, not a new lookup (DNS may answer differently now);
            # TLS still verifies the certificate for the URL's host name.
            with self._http.stream(
                "POST",
                target.pinned_url(),
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.host},
            ) as response:
                code = response.status_code
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= code < 300:
            return code, None
        return code, f"HTTP {code}"

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

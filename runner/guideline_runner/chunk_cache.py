"""The runner's side of the per-chunk summary cache: look up the summaries of a
guideline's map-reduce parts before calling the LLM, keep new ones, and report what it
did (`result.chunk_cache`, `usage.summarize.calls_saved`).

The cache is optional (`GUIDELINE_CACHE_DATABASE_URL`) and never fails a job: if the
database cannot be reached or refuses a query, the parts are summarized as without it and
the report says why. Entries belong to the job's tenant (`GUIDELINE_TENANT`, which the
operator sets from the job's row): without a tenant there is no cache. A cached summary
only replaces a summarize call: the checklist built from it is grounded in the text like
any other."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from guideline_runner.models import ChunkCacheReport

log = logging.getLogger(__name__)
DISABLED_NOTE = "GUIDELINE_CACHE_DATABASE_URL is not set: every part is summarized"
NO_TENANT_NOTE = "GUIDELINE_TENANT is not set: the cache is per tenant, every part is summarized"
# Most often a NetworkPolicy: runner pods may reach PostgreSQL only where it allows them.
UNREACHABLE_NOTE = (
    "cache unreachable: no connection to its PostgreSQL ({error}); every part is summarized. "
    "Runner pods need network access to it (with the chart's NetworkPolicies: set "
    "runner.chunkCacheSecret)"
)


class ChunkCache:
    """Summaries of chunks of one tenant's jobs for one model and prompt version."""

    def __init__(
        self, url: str | None, tenant: str | None, model: str, prompt_version: str
    ) -> None:
        self.url = url
        self.tenant = tenant
        self.model = model
        self.prompt_version = prompt_version
        note = DISABLED_NOTE if not url else NO_TENANT_NOTE if not tenant else None
        self.report = ChunkCacheReport(enabled=note is None, note=note)
        self._conn: Any = None

    def _connection(self) -> Any:
        # psycopg2 and the cache queries load only when a guideline is long enough to be
        # split: most jobs never need them.
        from guideline_core import summary_cache

        if self._conn is None:
            self._conn = summary_cache.connect(str(self.url))
        return self._conn

    def _failed(self, action: str, exc: Exception, note: str | None = None) -> None:
        note = note or f"cache unusable ({action}): {type(exc).__name__}"
        log.warning(
            "chunk cache unusable", extra={"action": action, "problem": str(exc), "note": note}
        )
        self.report = self.report.model_copy(update={"enabled": False, "note": note})
        self.close()

    def lookup(self, parts: Sequence[str]) -> dict[int, str]:
        """Cached summaries of `parts`, by index."""
        self.report = self.report.model_copy(update={"chunks": len(parts)})
        if not self.report.enabled:
            return {}
        from guideline_core import summary_cache

        hashes = [summary_cache.chunk_hash(part) for part in parts]
        try:
            conn = self._connection()
        except Exception as exc:  # the note says why, with no address: tenants read it
            self._failed("connect", exc, UNREACHABLE_NOTE.format(error=type(exc).__name__))
            return {}
        try:
            found = summary_cache.cached_summaries(
                conn, str(self.tenant), hashes, self.model, self.prompt_version
            )
        except Exception as exc:  # any database trouble: summarize without the cache
            self._failed("lookup", exc)
            return {}
        hits = {i: found[h] for i, h in enumerate(hashes) if h in found}
        self.report = self.report.model_copy(update={"hits": len(hits)})
        return hits

    def store(self, part: str, summary: str) -> None:
        """Keep the summary of one part."""
        if not self.report.enabled:
            return
        from guideline_core import summary_cache

        try:
            stored = summary_cache.store_summary(
                self._connection(),
                str(self.tenant),
                part,
                self.model,
                self.prompt_version,
                summary,
            )
        except Exception as exc:
            self._failed("store", exc)
            return
        if stored:
            self.report = self.report.model_copy(update={"stored": self.report.stored + 1})

    def close(self) -> None:
        """Close the connection, if one was opened."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

"""How this operator process runs, on top of the shared `OperatorSettings` (which also
shape the Jobs): peering, namespaces, kopf's worker pool. Environment variables are
`GUIDELINE_*` as everywhere; the command-line flags of `guideline-operator` override them."""

from __future__ import annotations

from guideline_core.settings import OperatorSettings
from pydantic import Field


class RunSettings(OperatorSettings):
    """Settings of the operator process."""

    standalone: bool = Field(
        False, description="Run without peering (one operator only: tests, the local stack)."
    )
    peering_name: str | None = Field(
        None,
        description="kopf peering object to join when replicated (KopfPeering per namespace, "
        "ClusterKopfPeering with all_namespaces); the highest priority replica is active.",
    )
    peering_priority: int = Field(0, description="This replica's peering priority.")
    all_namespaces: bool = Field(False, description="Serve every namespace, not `namespace`.")
    handler_workers: int = Field(16, ge=2, description="kopf's thread pool for handlers.")
    watch_timeout_seconds: int = Field(
        300, gt=0, description="Watch requests are renewed after this (server side)."
    )
    queue_refresh_seconds: float = Field(
        5.0, gt=0, description="Shortest period of rewriting queue positions of waiting jobs."
    )
    db_purge_interval_seconds: float = Field(
        3600.0, gt=0, description="Period of the database retention purge (db_retention_days)."
    )

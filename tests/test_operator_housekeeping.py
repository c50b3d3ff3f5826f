"""The retention of finished GuidelineJobs (`guideline_operator.housekeeping`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from guideline_core.settings import OperatorSettings
from guideline_operator.metrics import Metrics
from support.operator_objects import NOW


def test_finished_guidelinejobs_leave_etcd_after_an_hour_by_default() -> None:
    """A GuidelineJob holds its guideline text in etcd: by default a finished one is
    deleted an hour after it finished (its row and result stay in PostgreSQL)."""
    from guideline_operator.housekeeping import Retention

    settings = OperatorSettings(_env_file=None)
    retention = Retention(None, Metrics(), seconds=settings.cr_retention_seconds)  # type: ignore[arg-type]

    def finished(ago: timedelta) -> dict[str, Any]:
        return {"metadata": {}, "status": {"completedAt": (NOW - ago).isoformat()}}

    assert not retention.due(finished(timedelta(minutes=59)), NOW)
    assert retention.due(finished(timedelta(minutes=60)), NOW)
    assert not retention.due({"metadata": {}, "status": {"phase": "PROCESSING"}}, NOW)

"""The operator's metrics, read from a runner's result (`guideline_operator.metrics`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from guideline_operator.metrics import Metrics
from support.operator_objects import NOW


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_metrics_record_terminal_figures_and_llm_usage() -> None:
    metrics = Metrics(models=["gpt-4o-mini"])
    result = {
        "summary": "s",
        "checklist": [],
        "provider": "openai",
        "model": "gpt-4o-mini",
        "usage": {
            "summarize": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "calls": 1,
            },
            "checklist": {
                "prompt_tokens": 30,
                "completion_tokens": 40,
                "total_tokens": 70,
                "calls": 1,
            },
        },
        "durations": {"summarize": 1.5, "checklist": 0.5},
    }
    metrics.finished(
        "completed",
        reason="Completed",
        queued_at=NOW,
        run_started_at=NOW + timedelta(seconds=2),
        completed_at=NOW + timedelta(seconds=12),
        result=result,
    )
    metrics.finished(
        "failed",
        reason="BackoffLimitExceeded",
        queued_at=NOW,
        run_started_at=None,
        completed_at=NOW,
        result=None,
    )
    assert (
        sample(metrics, "guideline_jobs_finished_total", {"outcome": "completed", "reason": ""})
        == 1
    )
    assert (
        sample(
            metrics,
            "guideline_jobs_finished_total",
            {"outcome": "failed", "reason": "BackoffLimitExceeded"},
        )
        == 1
    )
    assert sample(metrics, "guideline_job_processing_seconds_sum", {"outcome": "completed"}) == 10
    assert sample(metrics, "guideline_job_end_to_end_seconds_sum", {"outcome": "completed"}) == 12
    tokens = {"step": "summarize", "model": "gpt-4o-mini", "kind": "prompt"}
    assert sample(metrics, "guideline_llm_tokens_total", tokens) == 100
    assert sample(metrics, "guideline_llm_tokens_total", {**tokens, "kind": "total"}) is None
    assert sample(metrics, "guideline_llm_tokens_total", {**tokens, "kind": "calls"}) is None
    assert (
        sample(
            metrics,
            "guideline_llm_step_duration_seconds_sum",
            {"step": "checklist", "model": "gpt-4o-mini"},
        )
        == 0.5
    )


def test_metric_labels_are_bounded() -> None:
    """The runner writes the result: a model outside allowed_models, an unknown step or an
    unknown failure reason become `other`, so no result can mint new series."""
    metrics = Metrics(models=["gpt-4o-mini"])
    for i in range(3):
        metrics.llm_figures(
            {
                "model": f"invented-{i}",
                "durations": {f"step-{i}": 1.0, "summarize": 1.0},
                "usage": {"summarize": {"prompt_tokens": 1, f"kind{i}_tokens": 5}},
            }
        )
        metrics.finished(
            "failed", reason=f"Made up {i}", queued_at=None, run_started_at=None,
            completed_at=None, result=None,
        )  # fmt: skip
    models = {
        s.labels["model"]
        for f in metrics.registry.collect()
        for s in f.samples
        if "model" in s.labels
    }
    steps = {
        s.labels["step"]
        for f in metrics.registry.collect()
        for s in f.samples
        if "step" in s.labels
    }
    assert models == {"other"} and steps == {"summarize", "other"}
    failed = {"outcome": "failed", "reason": "other"}
    assert sample(metrics, "guideline_jobs_finished_total", failed) == 3
    kinds = {
        s.labels["kind"]
        for f in metrics.registry.collect()
        for s in f.samples
        if "kind" in s.labels
    }
    assert kinds == {"prompt"}


@pytest.mark.parametrize("bad", [{"usage": "x", "durations": [1]}, {"usage": {"s": 3}}, {}])
def test_llm_figures_tolerate_unknown_shapes(bad: dict[str, Any]) -> None:
    metrics = Metrics()
    metrics.llm_figures(bad)
    assert (
        sample(
            metrics, "guideline_llm_tokens_total", {"step": "s", "model": "unknown", "kind": "x"}
        )
        is None
    )

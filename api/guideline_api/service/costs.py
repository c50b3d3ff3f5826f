"""A submission's estimate (no LLM call: the parts the runner will summarize, its LLM calls,
the input tokens counted with the model's tokenizer, their cost) and the tenant budget
checked against it at submission."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from guideline_core import cost, db
from guideline_core.resource import Provider
from guideline_core.settings import ApiSettings, Budget
from psycopg2.extensions import connection as PgConnection  # noqa: N812

from guideline_api.http.errors import ApiError, Reason
from guideline_api.schemas.estimate import JobEstimate
from guideline_api.schemas.submission import SubmitDocument, SubmitJob


def estimate_of(settings: ApiSettings, job: SubmitJob) -> cost.Estimate:
    """The estimate of `job` with the installation's chunk size and price table; a job
    naming no model or provider gets `default_model` and the LLM provider."""
    return cost.estimate(
        job.guideline_text,
        model=job.model or settings.default_model,
        provider=job.provider or Provider.OPENAI,
        chunk_chars=settings.chunk_chars,
        prices=settings.model_prices,
    )


def to_view(found: cost.Estimate) -> JobEstimate:
    """The API's view of an estimate."""
    return JobEstimate.model_validate({**asdict(found), "llm_calls": found.llm_calls})


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC day or calendar month holding `now`: its start and the next one's."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return start, start + timedelta(days=1)
    start = start.replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


def reserve_budget(
    conn: PgConnection,
    settings: ApiSettings,
    tenant: str,
    jobs: Sequence[SubmitJob | SubmitDocument],
) -> list[dict[str, Any] | None]:
    """The estimated cost of each of `jobs` to store with it, checked against the tenant's
    budget: 429 `budget_exceeded` (with the figures) if what was spent in the period, what
    its unfinished jobs reserve and these estimates exceed it. No budget: nothing is
    estimated (None each). An estimate in another currency, or of a model without a price,
    reserves nothing."""
    budget = settings.limits_for(tenant).budget
    if budget is None or not jobs:
        return [None] * len(jobs)
    reserved_costs: list[dict[str, Any] | None] = []
    for job in jobs:
        if not isinstance(job, SubmitJob):
            # An upload's text is known once the runner extracted it: it reserves nothing
            # (and is refused only when the budget is already spent).
            reserved_costs.append(None)
            continue
        found = estimate_of(settings, job).cost
        same = found is not None and found["currency"] == budget.currency
        reserved_costs.append(
            {"amount": found["amount"], "currency": found["currency"]} if same and found else None
        )
    new = sum(c["amount"] for c in reserved_costs if c is not None)
    now = datetime.now(UTC)
    start, end = period_bounds(budget.period, now)
    spent, reserved = db.tenant_spending(conn, tenant, start, budget.currency)
    left = budget.amount - spent - reserved
    if new > left:
        raise BudgetExceededError(tenant, budget, spent, reserved, new, left, end - now)
    return reserved_costs


class BudgetExceededError(ApiError):
    """429 `budget_exceeded`: the figures in `details`, Retry-After the period's end."""

    def __init__(
        self,
        tenant: str,
        budget: Budget,
        spent: float,
        reserved: float,
        estimate: float,
        left: float,
        until_next: timedelta,
    ):
        unit = budget.currency
        this = "today" if budget.period == "day" else "this month"
        figures = {
            "budget": budget.amount,
            "spent": spent,
            "reserved": reserved,
            "estimate": estimate,
            "left": max(0.0, left),
        }
        super().__init__(
            429,
            Reason.BUDGET_EXCEEDED,
            f"tenant {tenant} has spent {spent:g} {unit} of its budget of {budget.amount:g} "
            f"{unit} {this} and {reserved:g} {unit} is reserved by its unfinished jobs; this "
            f"submission's estimate of {estimate:g} {unit} exceeds the {max(0.0, left):g} "
            f"{unit} left",
            details=[
                {
                    "field": name,
                    "message": f"{value:g} {unit}"
                    + (f" per {budget.period}" if name == "budget" else ""),
                    "type": "budget",
                    "value": value,
                }
                for name, value in figures.items()
            ],
            headers={"Retry-After": str(max(1, math.ceil(until_next.total_seconds())))},
        )
        self.figures = {**figures, "currency": unit, "period": budget.period}

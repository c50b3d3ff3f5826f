"""Cost before and after (issue 21): `POST /jobs/estimate` answers from the text alone (parts
cut by the runner's own splitting, LLM calls of the chain's structure, input tokens of a
real tokenizer, the price table), with no LLM anywhere. The real app on a real PostgreSQL;
the app points at a dead Kubernetes API and no LLM endpoint is running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import bpe_openai
import pytest
from guideline_core import db
from guideline_core.resource import Phase
from guideline_core.splitting import checklist_sections, map_parts
from guideline_operator.metrics import Metrics
from prometheus_client import CollectorRegistry
from support.api import (
    ADMIN_KEY,
    BOB_KEY,
    SettingsFor,
    api_client,
    auth,
    problem,
)
from support.rows import add_job

TEXT = (
    "Hand Hygiene\n\nStaff must wash hands before every patient contact.\n\n"
    "Gloves\n\nGloves should be changed between patients; <|endoftext|> is plain text here."
)


def usd(amount: Decimal) -> float:
    """An amount as the API rounds it: to the micro-unit, half up."""
    return float(amount.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))


def tokens(text: str, encoding: str = "o200k_base") -> int:
    return len(bpe_openai.get_encoding(encoding).encode_ordinary(text))


def long_text(paragraphs: int) -> str:
    return "\n\n".join(
        f"Section {n} says staff must record item {n} of the register, and should check "
        f"every entry numbered {n * 7} twice before the shift ends." * 3
        for n in range(paragraphs)
    )


@pytest.mark.parametrize("path", ["/v1/jobs/estimate", "/jobs/estimate"])
def test_a_short_guideline_is_one_part_two_calls_and_priced(settings_for: SettingsFor, path: str):
    with api_client(settings_for()) as client:
        response = client.post(
            path, json={"guideline_text": TEXT, "model": "gpt-4o-mini"}, headers=auth()
        )
        assert response.status_code == 200, response.text
        body = response.json()
        # One part to summarize, one section to draw items from: the text is read twice.
        expected = tokens(TEXT.strip()) + tokens(TEXT)
        assert body["encoding"] == "o200k_base"
        assert (body["sections"], body["parts"]) == (1, 1)
        assert (body["map_calls"], body["reduce_calls"], body["checklist_calls"]) == (1, 0, 1)
        assert body["llm_calls"] == 2
        assert body["input_tokens"] == expected
        assert body["cost"] == {
            "amount": usd(expected * Decimal("0.15") / 1_000_000),
            "currency": "USD",
            "prices": {"input_per_million": 0.15, "output_per_million": 0.6},
        }
        # Nothing was recorded: an estimate is not a job.
        assert client.get("/v1/jobs", headers=auth()).json()["items"] == []


def test_a_long_guideline_is_estimated_over_the_runners_parts(settings_for: SettingsFor):
    text = long_text(40)
    # 2,000-character partial summaries pack two to a 5,000-character group: every combine
    # call merges two summaries into one, so n parts take n - 1 reduce calls.
    settings = settings_for(chunk_chars=5_000, default_model="gpt-4.1")
    parts = map_parts(text, 5_000)
    sections = checklist_sections(text, 5_000)
    assert len(parts) > 3 and len(sections) > 3
    with api_client(settings) as client:
        body = client.post("/v1/jobs/estimate", json={"guideline_text": text}, headers=auth())
        body = body.json()
    assert body["model"] == "gpt-4.1"
    assert body["parts"] == len(parts)
    assert body["map_calls"] == len(parts)
    assert body["reduce_calls"] == len(parts) - 1
    assert body["sections"] == body["checklist_calls"] == len(sections)
    assert body["llm_calls"] == 2 * len(parts) - 1 + len(sections)
    assert body["input_tokens"] == sum(tokens(t) for t in [*parts, *sections])
    assert body["cost"]["amount"] == usd(body["input_tokens"] * Decimal(2) / 1_000_000)


def test_the_encoding_follows_the_model_and_an_unknown_model_has_no_cost(
    settings_for: SettingsFor,
):
    with api_client(settings_for(allowed_models=[])) as client:
        old = client.post(
            "/v1/jobs/estimate", json={"guideline_text": TEXT, "model": "gpt-4"}, headers=auth()
        ).json()
        unknown = client.post(
            "/v1/jobs/estimate", json={"guideline_text": TEXT, "model": "acme-7b"}, headers=auth()
        ).json()
    assert old["encoding"] == "cl100k_base"
    assert old["input_tokens"] == tokens(TEXT.strip(), "cl100k_base") + tokens(TEXT, "cl100k_base")
    assert old["input_tokens"] != tokens(TEXT.strip()) + tokens(TEXT)  # vocabularies differ
    assert unknown["encoding"] == "o200k_base"
    assert unknown["cost"] is None
    assert any("acme-7b" in note for note in unknown["notes"])


def test_the_price_table_is_a_setting(settings_for: SettingsFor):
    prices = {
        "gpt-4o-mini": {"input_per_million": 1000, "output_per_million": 1, "currency": "EUR"}
    }
    with api_client(settings_for(model_prices=prices)) as client:
        body = client.post(
            "/v1/jobs/estimate", json={"guideline_text": TEXT}, headers=auth()
        ).json()
    assert body["cost"]["currency"] == "EUR"
    read_twice = tokens(TEXT.strip()) + tokens(TEXT)  # the part, then the section
    assert body["cost"]["amount"] == usd(read_twice * Decimal(1000) / 1_000_000)


def test_the_extractive_provider_makes_no_llm_call_and_costs_nothing(settings_for: SettingsFor):
    with api_client(settings_for()) as client:
        body = client.post(
            "/v1/jobs/estimate",
            json={"guideline_text": TEXT, "provider": "extractive"},
            headers=auth(),
        ).json()
    assert body["llm_calls"] == 0
    assert body["cost"]["amount"] == 0


def test_an_estimate_is_refused_like_a_submission(settings_for: SettingsFor):
    with api_client(settings_for(max_guideline_chars=50, allowed_models=["gpt-4o-mini"])) as client:
        too_long = client.post("/v1/jobs/estimate", json={"guideline_text": TEXT}, headers=auth())
        model = client.post(
            "/v1/jobs/estimate",
            json={"guideline_text": "Wash hands.", "model": "gpt-4o"},
            headers=auth(),
        )
        blank = client.post("/v1/jobs/estimate", json={"title": "x"}, headers=auth())
    assert problem(too_long, 413)["reason"] == "text_too_long"
    assert problem(model, 422)["reason"] == "model_not_allowed"
    assert problem(blank, 422)["reason"] == "validation_error"


def a_result(model: str, prompt: int, completion: int, provider: str = "openai") -> dict:
    half = {"prompt_tokens": prompt // 2, "completion_tokens": completion // 2, "calls": 1}
    return {
        "summary": "Wash hands.",
        "checklist": [],
        "model": model,
        "provider": provider,
        "usage": {"summarize": half, "checklist": half},
    }


def test_a_completed_result_carries_its_cost_computed_once(
    settings_for: SettingsFor, database: db.Database
):
    done = add_job(database, status=Phase.COMPLETED, result=a_result("gpt-4o", 3_000, 400))
    unpriced = add_job(database, status=Phase.COMPLETED, result=a_result("acme-7b", 3_000, 400))
    extractive = add_job(
        database, status=Phase.COMPLETED, result=a_result("", 0, 0, provider="extractive")
    )
    with api_client(settings_for()) as client:
        cost = client.get(f"/v1/jobs/{done}", headers=auth()).json()["result"]["usage"]["cost"]
        assert cost["amount"] == round((3_000 * 2.5 + 400 * 10) / 1_000_000, 6)
        assert cost["currency"] == "USD"
        assert cost["prices"] == {"input_per_million": 2.5, "output_per_million": 10.0}
        assert cost["computed_at"]
        view = client.get(f"/v1/jobs/{unpriced}", headers=auth()).json()
        assert view["result"]["usage"]["cost"] is None
        assert view["result"]["usage"]["summarize"]["prompt_tokens"] == 1_500  # steps kept
        free = client.get(f"/v1/jobs/{extractive}", headers=auth()).json()
        assert free["result"]["usage"]["cost"]["amount"] == 0
    # Mirrored again with other prices, the stored cost stays what it was at completion.
    with database.connection() as conn:
        row = db.get_job(conn, done)
        assert row is not None
        db.mirror_state(
            conn,
            db.JobState(
                done,
                Phase.COMPLETED,
                attempts=row["attempts"] + 1,
                started_at=row["started_at"],
                completed_at=row["completed_at"],
                result=row["result"],
            ),
            prices={"gpt-4o": {"input_per_million": 99, "output_per_million": 99}},
        )
        assert db.get_job(conn, done)["cost"] == cost  # type: ignore[index]


def test_the_first_page_carries_the_totals_of_the_tenants_jobs(
    settings_for: SettingsFor, database: db.Database
):
    add_job(database, status=Phase.COMPLETED, result=a_result("gpt-4o-mini", 2_000_000, 0))
    add_job(database, status=Phase.COMPLETED, result=a_result("gpt-4o", 400_000, 100_000))
    add_job(database, status=Phase.COMPLETED, result=a_result("acme-7b", 1_000, 0))
    add_job(database)  # PENDING: counted, costs nothing yet
    add_job(database, status=Phase.COMPLETED, result=a_result("gpt-4o", 10**6, 0), tenant="bob")
    with api_client(settings_for()) as client:
        first = client.get("/v1/jobs?limit=1", headers=auth()).json()
        second = client.get(
            f"/v1/jobs?limit=1&cursor={first['next_cursor']}", headers=auth()
        ).json()
        completed = client.get("/v1/jobs?status=PENDING", headers=auth()).json()
    # 2 M gpt-4o-mini input tokens: 0.30; gpt-4o: 0.4 M x 2.5 + 0.1 M x 10 = 2.00.
    assert first["totals"] == {"jobs": 4, "cost": [{"amount": 2.3, "currency": "USD"}]}
    assert second["totals"] is None
    assert completed["totals"] == {"jobs": 1, "cost": []}


def test_the_operator_counts_the_cost_in_a_metric_per_tenant():
    metrics = Metrics(CollectorRegistry(), models=["gpt-4o"], tenants=["acme"], max_tenants=2)

    def completed(model: str, tenant: str | None, prompt: int = 400_000, out: int = 100_000):
        metrics.finished(
            "completed",
            reason=None,
            queued_at=None,
            run_started_at=None,
            completed_at=None,
            result=a_result(model, prompt, out),
            tenant=tenant,
        )

    def cost(tenant: str, model: str = "gpt-4o") -> float | None:
        return metrics.registry.get_sample_value(
            "guideline_llm_cost_total", {"tenant": tenant, "model": model, "currency": "USD"}
        )

    for tenant in ("team-a", "team-a", "acme", "team-b", "team-c", None):
        completed("gpt-4o", tenant)
    completed("acme-7b", "acme", out=0)
    # 0.4 M x 2.5 + 0.1 M x 10 = 2.00 a job. `acme` (configured) and the first other
    # tenant have their own label (max_tenants 2); later tenants are `other`.
    assert cost("team-a") == pytest.approx(4.0)
    assert cost("acme") == pytest.approx(2.0)
    assert cost("other") == pytest.approx(4.0)
    assert cost("unknown") == pytest.approx(2.0)
    assert cost("team-b") is None and cost("team-c") is None
    assert cost("acme", "other") is None  # no price: not counted


def test_a_submission_past_the_tenants_budget_is_refused_with_the_figures_and_audited(
    settings_for: SettingsFor, database: db.Database
):
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # Spent this month: 2.00 USD (gpt-4o, 0.4 M in, 0.1 M out); last month's 9 USD is not.
    add_job(
        database,
        status=Phase.COMPLETED,
        created_at=now - timedelta(seconds=5),  # completed 9 s after: now + 4 s
        result=a_result("gpt-4o", 400_000, 100_000),
    )
    add_job(
        database,
        status=Phase.COMPLETED,
        created_at=month - timedelta(days=2),
        result=a_result("gpt-4o", 3_600_000, 0),
    )
    body = {"guideline_text": long_text(30), "model": "gpt-4o"}
    with api_client(settings_for()) as client:
        estimate = client.post("/v1/jobs/estimate", json=body, headers=auth()).json()
    each = estimate["cost"]["amount"]
    assert each > 0
    budget = {"amount": 2.0 + 1.5 * each, "currency": "USD", "period": "month"}
    settings = settings_for(tenant_limits={"alice": {"budget": budget}})
    with api_client(settings) as client:
        first = client.post("/v1/jobs", json=body, headers=auth())
        assert first.status_code == 202, first.text
        refused = client.post("/v1/jobs", json=body, headers=auth())
        other_tenant = client.post("/v1/jobs", json=body, headers=auth(BOB_KEY))
        audit = client.get("/v1/audit?tenant=alice", headers=auth(ADMIN_KEY)).json()
    assert other_tenant.status_code == 202  # bob has no budget
    error = problem(refused, 429)
    assert error["reason"] == "budget_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    figures = {d["field"]: d["value"] for d in error["details"]}
    assert figures == pytest.approx(
        {
            "budget": budget["amount"],
            "spent": 2.0,
            "reserved": each,
            "estimate": each,
            "left": 0.5 * each,
        }
    )
    (entry,) = [e for e in audit["items"] if e["action"] == "budget_exceeded"]
    assert entry["detail"]["spent"] == pytest.approx(2.0)
    assert entry["detail"]["estimate"] == pytest.approx(each)
    assert entry["detail"]["currency"] == "USD" and entry["detail"]["period"] == "month"
    with database.connection() as conn:
        jobs = db.list_jobs(conn, status=Phase.PENDING, limit=10, tenant="alice")
    assert [j["estimated_cost"] for j in jobs] == [{"amount": each, "currency": "USD"}]

"""Results to export: a job as `GET /v1/jobs/{id}` shows it, with the item fields later
results carry (strength, grade with offsets, page, section) and text meant to break a
format (formula starts, markup, line breaks, non-ASCII)."""

from __future__ import annotations

import copy
from typing import Any

EVENT_ID = "0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10"
TEXT = (
    "1 Hand hygiene\n"
    "=Staff must wash hands before patient contact. (Strong, high-quality evidence)\n"
    "@Gloves should be worn for contact with blood.\n"
    "2 Devices\n"
    "-Catheters may be flushed <daily> & [checked](http://x).\n"
)
# A formula-looking item and quote, markup, a line break inside a quote.
HOSTILE_ITEMS: list[dict[str, Any]] = [
    {
        "item": '=HYPERLINK("http://evil","click")',
        "priority": "high",
        "category": "hygiene",
        "source": {"quote": "=Staff must wash hands", "start": 14, "end": 36, "match": "exact"},
        "grounded": True,
        "strength": "must",
        "grade": {"text": "Strong, high-quality evidence", "start": 63, "end": 92},
        "page": 3,
        "page_label": "iii",
        "section": ["1 Hand hygiene"],
    },
    {
        "item": "+Wear gloves <script>alert(1)</script>",
        "priority": "medium",
        "category": "ppe",
        # As the runner cites a quote across a page break (docs/contracts.md).
        "source": {
            "quote": "@Gloves should be worn",
            "start": 94,
            "end": 116,
            "match": "exact",
            "page": 3,
            "page_end": 4,
            "section": ["1 Hand hygiene"],
        },
        "grounded": True,
        "strength": "should",
        "grade": "Weak",
    },
    {
        "item": "-Flush catheters\tdaily",
        "priority": "low",
        "category": "devices",
        "source": {
            "quote": "-Catheters may be flushed <daily>\r\n# & [checked](http://x).",
            "start": 150,
            "end": 200,
            "match": "normalized",
        },
        "grounded": True,
        "strength": "may",
        "section": ["2 Devices"],
    },
    {
        "item": "Record the check in the chart",
        "priority": "low",
        "category": "documentation",
        "source": None,
        "grounded": False,
    },
]


def completed_job(
    items: list[dict[str, Any]] | None = None,
    *,
    needs_review: bool = True,
    changes: dict[str, Any] | None = None,
    title: str = "Hand hygiene \u2013 Händewaschen",
    document_sha256: str | None = None,
) -> dict[str, Any]:
    """A COMPLETED job as the API shows it."""
    result: dict[str, Any] = {
        "summary": "Wash hands; wear <gloves>.",
        "provider": "extractive",
        "model": "extractive-v1",
        "degraded": False,
        "checklist": copy.deepcopy(HOSTILE_ITEMS if items is None else items),
        "needs_review": needs_review,
        "review": {
            "thresholds": {"min_grounding": 0.9, "min_coverage": 0.5},
            "reasons": ["grounding 0.75 is below 0.9"] if needs_review else [],
        },
    }
    if changes is not None:
        result["changes"] = changes
    if document_sha256 is not None:
        result["document"] = {"sha256": document_sha256, "media_type": "application/pdf"}
    return {
        "event_id": EVENT_ID,
        "status": "COMPLETED",
        "title": title,
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:09Z",
        "provider": "extractive",
        "model": "extractive-v1",
        "needs_review": needs_review,
        "result": result,
    }


def superseding_changes() -> dict[str, Any]:
    """`result.changes` of a job whose items 1 and 2 changed or were added."""
    return {
        "available": True,
        "supersedes": "0193d6a4-0000-7000-8000-000000000001",
        "added": [copy.deepcopy(HOSTILE_ITEMS[1])],
        "removed": [{"item": "Old item", "source": None}],
        "changed": [{"before": {"item": "old wording"}, "after": copy.deepcopy(HOSTILE_ITEMS[0])}],
        "unchanged": 2,
        "newly_uncovered": [],
    }

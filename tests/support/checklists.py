"""Comparing checklists: what a test scripted the LLM to say with what a result holds."""

from __future__ import annotations

from typing import Any

FIELDS = ("item", "priority", "category")


def item_fields(checklist: list[Any]) -> list[dict[str, Any]]:
    """Each item's own fields (item, priority, category), without quote or source."""
    out = []
    for item in checklist:
        data = item if isinstance(item, dict) else item.model_dump(mode="json")
        out.append({key: data[key] for key in FIELDS})
    return out


def assert_grounded_in(checklist: list[Any], text: str) -> None:
    """Every item carries a source that is exactly the text at its offsets."""
    for item in checklist:
        data = item if isinstance(item, dict) else item.model_dump(mode="json")
        source = data["source"]
        assert data["grounded"] is True and source is not None, data
        assert text[source["start"] : source["end"]] == source["quote"], data

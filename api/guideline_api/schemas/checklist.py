"""The JSON Schema of `result.checklist` items: the result is passed through as stored,
so this is documentation and the contract tests' check, not a model."""

from __future__ import annotations

from typing import Any


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# A passage of the guideline an item quotes: guideline_text[start:end] == quote.
SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "quote": {"type": "string"},
        "start": {"type": "integer", "minimum": 0},
        "end": {"type": "integer", "minimum": 0},
        "match": {"type": "string", "enum": ["exact", "normalized"]},
        "page": {
            "type": "integer",
            "minimum": 1,
            "description": "The document's page (1-based, physical) the quote "
            "starts on (PDF); absent for a text without pages.",
        },
        "page_end": {
            "type": "integer",
            "minimum": 1,
            "description": "The page the quote ends on, only when it runs across a page break.",
        },
        "page_label": {
            "type": "string",
            "description": "The printed label of `page` (e.g. `iv`), when the PDF has page labels.",
        },
        "section": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The heading path the quote sits under, outermost "
            "first (DOCX, HTML, Markdown).",
        },
    },
    "required": ["quote", "start", "end"],
}


# One checklist item of `result.checklist`, as the runner writes it (the result itself is
# passed through as stored, so its schema is documentation and the contract tests' check).
CHECKLIST_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An action someone can take or check (never a question, heading, "
    "evidence summary, background or a statement that no recommendation is made).",
    "properties": {
        "item": {"type": "string", "description": "What to do."},
        "priority": {"type": "string", "enum": ["high", "medium", "low"]},
        "category": {"type": "string", "description": "A short grouping label."},
        "source": _nullable(
            {
                **SOURCE_SCHEMA,
                "description": "The passage the item comes from: "
                "guideline_text[start:end] == quote. Null when the quote is not in the text.",
            }
        ),
        "sources": {
            "type": "array",
            "items": SOURCE_SCHEMA,
            "description": "Every place the guideline quotes the item's obligation (the same "
            "obligation quoted twice is one item): the first is `source`. Empty when the "
            "item is not grounded.",
        },
        "grounded": {"type": "boolean"},
        "strength": _nullable(
            {
                "type": "string",
                "enum": ["must", "must_not", "should", "should_not", "may"],
                "description": "How the source words it (must_not / should_not: a "
                "prohibition). Null when it words none or the item is not grounded.",
            }
        ),
        "grade": _nullable(
            {
                "type": "object",
                "description": "The grade or class the guideline states for the item "
                '("Strong", "Class I, Level B", "Grade A"), verbatim from the text '
                "near its quote: guideline_text[start:end] == text. Null when none is stated.",
                "properties": {
                    "text": {"type": "string"},
                    "start": {"type": "integer", "minimum": 0},
                    "end": {"type": "integer", "minimum": 0},
                },
                "required": ["text", "start", "end"],
            }
        ),
    },
    "required": ["item"],
}

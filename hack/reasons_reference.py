"""Writes the table of error reasons in docs/api.md (between `<!-- reasons:begin -->` and
`<!-- reasons:end -->`) from the code: every `Reason` with its title (`TITLES` in
guideline_api.http.errors) and its HTTP status, read from the error answers of the served OpenAPI
document, so the list cannot drift from the code. `--check` exits 1 if it is stale (a test
runs it)."""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from typing import Any

from generated import ROOT, between, cell, write_or_check
from guideline_api.app import create_app
from guideline_api.http.errors import TITLES
from guideline_core.settings import ApiSettings

TARGET = ROOT / "docs" / "api.md"
# Answered before any route, so in no operation of the document: FastAPI's 405 and the
# HTTP server's refusals of the request head.
BEFORE_ROUTING = {
    "method_not_allowed": "405",
    "headers_timeout": "408",
    "headers_too_large": "431",
    "too_many_headers": "431",
}


def documented_statuses() -> dict[str, set[str]]:
    """reason -> the statuses the OpenAPI document gives it under (its problem examples)."""
    logging.disable(logging.WARNING)  # the app's start-up warnings are not the output
    settings = ApiSettings(database_url="postgresql://docs@127.0.0.1:1/none")  # never opened
    document: dict[str, Any] = create_app(settings).openapi()
    found: dict[str, set[str]] = defaultdict(set)
    for operations in document["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                for content in response.get("content", {}).values():
                    for example in (content.get("examples") or {}).values():
                        value = example.get("value")
                        if isinstance(value, dict) and "reason" in value:
                            found[value["reason"]].add(status)
    return found


def table() -> str:
    """The Markdown table, in the order `Reason` defines them."""
    statuses = documented_statuses()
    lines = ["| reason | status | title |", "|---|---|---|"]
    for reason, title in TITLES.items():
        code = str(reason)
        shown = sorted(statuses.get(code, set())) or [BEFORE_ROUTING.get(code, "—")]
        lines.append(f"| `{code}` | {', '.join(shown)} | {cell(title)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    wanted = between(TARGET.read_text(), "reasons", table())
    sys.exit(write_or_check(TARGET, wanted, "hack/reasons_reference.py", __doc__))

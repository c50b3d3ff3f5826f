"""Writes the values table of charts/guideline-ingest/README.md from the comments of the
chart's values.yaml (the comment block right above a key describes it; a commented map gets
a row of its own above its keys), between the markers `<!-- values:begin -->` and
`<!-- values:end -->`, so the table cannot drift from the values. `--check` exits 1 if the
README is out of date (a test runs it)."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml
from generated import ROOT, between, cell, write_or_check

CHART = ROOT / "charts" / "guideline-ingest"
VALUES = CHART / "values.yaml"
README = CHART / "README.md"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?:\s|$)")
_RULE = re.compile(r"^#\s*-{3,}\s*$")


def comments(text: str) -> dict[str, str]:
    """Dotted key -> the comment block right above it (joined into one line)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block = [] if _RULE.match(stripped) else [*block, stripped.lstrip("#").strip()]
            continue
        match = _KEY.match(line)
        if not match:
            if not stripped:
                block = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), match["key"]])
        stack.append((indent, match["key"]))
        if block:
            found[path] = " ".join(block)
        block = []
    return found


# Maps shown whole, in one row: label sets, selectors, resource quantities.
WHOLE = frozenset(
    {"labels", "annotations", "alertLabels", "nodeSelector", "podSelector",
     "namespaceSelector", "requests", "limits", "seccompProfile", "capabilities"}
)  # fmt: skip


def rows(values: Any, notes: dict[str, str], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) rows: every leaf (a scalar, a list, an empty map or
    a map in WHOLE), each commented map first as a row of its own."""
    found: list[tuple[str, str, str]] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        note = notes.get(path, "")
        if isinstance(value, dict) and value and key not in WHOLE:
            if note:
                found.append((path, "", note))
            found.extend(rows(value, notes, f"{path}."))
        else:
            found.append((path, json.dumps(value, separators=(", ", ": ")), note))
    return found


def table() -> str:
    """The Markdown values table."""
    text = VALUES.read_text()
    lines = ["| key | default | description |", "|---|---|---|"]
    for path, default, note in rows(yaml.safe_load(text), comments(text)):
        shown = f"`{cell(default)}`" if default else ""
        lines.append(f"| `{path}` | {shown} | {cell(note)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    wanted = between(README.read_text(), "values", table())
    sys.exit(write_or_check(README, wanted, "hack/values_reference.py", __doc__))

"""`python -m bench.coverage`: the extractive provider on the real test set
(tests/data/guidelines/*.md): per guideline its characters, checklist items, obligation
sentences, their coverage by the items (`quality.coverage`), and the items with a strength
and with a grade. In process, no cluster and no LLM; figures only, nothing asserted (the
test of the set is tests/test_items.py).

    .venv/bin/python -m bench.coverage                 # the default cap (max_checklist_items)
    .venv/bin/python -m bench.coverage --cap 30 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import REPO_ROOT

GUIDELINES = REPO_ROOT / "tests" / "data" / "guidelines"


def guidelines() -> list[Path]:
    """The Markdown guidelines of the set (not their provenance notes)."""
    return sorted(p for p in GUIDELINES.glob("*.md") if p.name != "PROVENANCE.md")


def measure(path: Path, cap: int) -> dict[str, Any]:
    """The extractive checklist of one guideline, assessed as the chain assesses it."""
    from guideline_runner.grounding import ground
    from guideline_runner.obligations import obligations_of
    from guideline_runner.providers.extractive import ExtractiveProvider
    from guideline_runner.quality import assess

    text = path.read_text(encoding="utf-8")
    drafts = ExtractiveProvider(max_items=cap).checklist("", guideline=text).value
    grounded = ground(drafts, text)
    quality = assess(grounded, obligations_of(text))
    items = grounded.items
    return {
        "guideline": path.stem,
        "chars": len(text),
        "items": len(items),
        "obligations": quality.obligations,
        "covered": quality.covered_obligations,
        "coverage": quality.coverage,
        "with_strength": sum(1 for i in items if getattr(i, "strength", None)),
        "with_grade": sum(1 for i in items if getattr(i, "grade", None)),
    }


def main(argv: list[str] | None = None) -> None:
    """Print one row per guideline of the set."""
    parser = argparse.ArgumentParser(prog="python -m bench.coverage")
    parser.add_argument("--cap", type=int, help="max items (default: the setting's default)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args(argv)
    if args.cap is None:
        from guideline_core.settings import RunnerSettings

        args.cap = RunnerSettings.model_fields["max_checklist_items"].default
    rows = [measure(path, args.cap) for path in guidelines()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    columns = list(rows[0]) if rows else []
    print(f"cap {args.cap}")
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))


if __name__ == "__main__":
    main()

"""What the `hack/*_reference.py` generators share: put a generated block between two
markers of a Markdown file, and write the file or, with `--check`, fail if it is stale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cell(text: str) -> str:
    """Text for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def between(text: str, name: str, block: str) -> str:
    """`text` with `block` between `<!-- name:begin -->` and `<!-- name:end -->`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    start, stop = text.index(begin) + len(begin), text.index(end)
    return f"{text[:start]}\n{block}\n{text[stop:]}"


def write_or_check(target: Path, wanted: str, script: str, description: str | None) -> int:
    """Write `wanted` to `target`; with `--check` on the command line, only exit 1 when the
    file differs (a test runs it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {target.name} is stale")
    if parser.parse_args().check:
        if not target.exists() or target.read_text() != wanted:
            print(f"{target} is out of date: run .venv/bin/python {script}", file=sys.stderr)
            return 1
        return 0
    target.write_text(wanted)
    print(f"wrote {target}")
    return 0

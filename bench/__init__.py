"""Benchmarks of guideline-ingest, run as `python -m bench` (`make bench`): figures on
stdout, in bench-results/<timestamp>.json and a PNG plot next to it. See `python -m bench
--help` and bench/__main__.py.

The benchmarks reuse the test suite's helpers (tests/support: the local control plane,
the fake LLM, the operator stack, a throw-away PostgreSQL), so tests/ goes on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests"))

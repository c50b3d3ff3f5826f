"""What a module costs whoever imports it: checked in a fresh interpreter, since the test
process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys


def imported_by(statement: str, modules: set[str]) -> list[str]:
    """Which of `modules` (full dotted names) a fresh interpreter has imported after
    running the import `statement`, sorted."""
    report = f"print(json.dumps(sorted(set(sys.modules) & set({sorted(modules)!r}))))"
    code = f"import json, sys\n{statement}\n{report}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)

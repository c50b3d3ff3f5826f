#!/usr/bin/env python3
"""Write `requirements.lock`: the exact versions, taken from the project's virtualenv, of
the runtime dependencies (pyproject's `[project.dependencies]` and everything they pull in,
extras included). The container image installs exactly these. (The build backend, which
the venv does not hold, is pinned by hand in `requirements-build.lock`.)

Dev tools (pytest, ruff, ...) are left out: only the closure of the runtime requirements
is written. Run it with the venv's Python after changing dependencies:

    .venv/bin/python hack/lock-requirements.py          # rewrite requirements.lock
    .venv/bin/python hack/lock-requirements.py --check  # exit 1 if it would change
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK = REPO_ROOT / "requirements.lock"
HEADER = (
    "# Exact runtime dependencies of guideline-ingest, installed by the Dockerfile with\n"
    "# `pip install --no-deps --only-binary=:all:`. Generated from the project's venv by\n"
    "# hack/lock-requirements.py; do not edit by hand.\n"
)


def _applies(req: Requirement, extras: frozenset[str]) -> bool:
    """Whether a requirement applies on this platform with these extras requested."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in extras | {""})


def runtime_closure(roots: list[str]) -> dict[str, str]:
    """Installed name -> version of every distribution the root requirements need."""
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in roots if _applies(Requirement(r), frozenset())]
    while todo:
        req = todo.pop()
        extras = frozenset(req.extras)
        key = (canonicalize_name(req.name), extras)
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(req.name)
        if not req.specifier.contains(dist.version, prereleases=True):
            raise SystemExit(f"installed {req.name} {dist.version} does not satisfy {req}")
        pinned[canonicalize_name(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            if _applies(sub, extras):
                todo.append(sub)
    return pinned


def render() -> str:
    """The lock file's text for the current venv."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    roots = list(pyproject["project"]["dependencies"])
    pins = runtime_closure(roots)
    return HEADER + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))


def main() -> int:
    """Write (or with --check, compare) requirements.lock."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the lock is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if LOCK.read_text() != text:
            print("requirements.lock is stale: run hack/lock-requirements.py", file=sys.stderr)
            return 1
        return 0
    LOCK.write_text(text)
    print(f"wrote {LOCK.relative_to(REPO_ROOT)} ({text.count('==')} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Documentation that is generated from the code stays current, and the README keeps its
promises (the two setup commands)."""

from __future__ import annotations

import subprocess
import sys

from support.cluster import REPO_ROOT


def test_configuration_reference_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_setting_is_described() -> None:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    undocumented = [line for line in text.splitlines() if line.endswith("|  |")]
    assert undocumented == []


def test_readme_names_the_setup_and_test_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci

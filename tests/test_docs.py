"""Documentation that is generated from the code stays current (settings, error reasons,
metrics), the README keeps its promises (the two setup commands, a front door of about 200
lines), and every relative link of the READMEs and docs/ reaches a file and heading."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.cluster import REPO_ROOT

GENERATORS = ("config_reference.py", "reasons_reference.py", "metrics_reference.py")


@pytest.mark.parametrize("script", GENERATORS)
def test_generated_reference_is_current(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / script), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_setting_is_described() -> None:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    undocumented = [line for line in text.splitlines() if line.endswith("|  |")]
    assert undocumented == []


def test_the_reasons_table_lists_every_reason() -> None:
    """The generated table is not empty or partial: every reason of the code has a row."""
    from guideline_api.http.errors import TITLES

    text = (REPO_ROOT / "docs" / "api.md").read_text()
    text = text[text.index("<!-- reasons:begin -->") : text.index("<!-- reasons:end -->")]
    listed = re.findall(r"^\| `([a-z0-9_]+)` \| (\S+) \|", text, re.M)
    assert [reason for reason, _ in listed] == [str(reason) for reason in TITLES]
    assert {status for _, status in listed} >= {"401", "404", "409", "422", "429", "503"}


def test_the_api_description_lists_every_reason() -> None:
    """The OpenAPI document's description names every reason of the code and the page that
    lists their statuses."""
    from guideline_api.app import create_app
    from guideline_api.http.errors import TITLES
    from guideline_core.settings import ApiSettings

    settings = ApiSettings(database_url="postgresql://docs@127.0.0.1:1/none")  # never opened
    description = create_app(settings).openapi()["info"]["description"]
    assert [r for r in map(str, TITLES) if f"`{r}`" not in description] == []
    assert "docs/api.md" in description


def test_readme_names_the_setup_and_test_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_readme_is_a_front_door() -> None:
    """The README stays short; the manual lives in docs/ (issue 24)."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    head = readme[: readme.index("## Architecture")]
    assert "make demo" in head and "make test" in head and "kind" in head and "minikube" in head


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a Markdown text (headings outside code fences)."""
    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^#{1,6} (.+)$", line)):
            slug = re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


def pages() -> list[Path]:
    chart = REPO_ROOT / "charts" / "guideline-ingest" / "README.md"
    return [REPO_ROOT / "README.md", chart, *sorted((REPO_ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```|`[^`\n]*`", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing = not file.exists()
        if missing or (anchor and file.suffix == ".md" and anchor not in anchors(file.read_text())):
            broken.append(target)
    assert broken == []

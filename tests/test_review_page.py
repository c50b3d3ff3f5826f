"""What a reviewer sees: `guideline-client status`/`show` in a terminal (each item with its
quote, the uncovered obligations, the changes), and `show --html`, rendered by real
headless Chromium and checked on the pixels of its screenshot: the cited passages are
highlighted in the guideline column, the uncovered obligation below them in its own
colour, and a checklist without sources highlights nothing. The API runs for real
(uvicorn, PostgreSQL); results come from the real extractive chain."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guideline_api import client
from guideline_api.review_html import SOURCE_COLOUR, UNCOVERED_COLOUR, highlighted
from guideline_core import db
from guideline_core.resource import Phase
from support.api import ALICE_KEY, dead_kubeconfig, make_settings, running_server
from support.browser import pixels_of, screenshot
from support.rows import add_job
from test_versions import V1, V2, extractive_result


@pytest.fixture
def api_url(database: db.Database, tmp_path: Path) -> Iterator[str]:
    with running_server(make_settings(database.url, dead_kubeconfig(tmp_path))) as url:
        yield url


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        client.main(["--url", url, "--api-key", ALICE_KEY, *args])
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def test_the_terminal_shows_quotes_uncovered_obligations_and_changes(
    database: db.Database, api_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = add_job(database, status=Phase.COMPLETED, text=V1, result=extractive_result(V1))
    partial = extractive_result(V2, max_checklist_items=3)
    new = add_job(database, status=Phase.COMPLETED, text=V2, result=partial, supersedes=old)

    code, out, _ = cli(capsys, api_url, "show", str(new))

    assert code == 0
    for item in partial["checklist"]:
        assert "“" + " ".join(item["source"]["quote"].split()) + "”" in " ".join(out.split())
        assert f"(characters {item['source']['start']}-{item['source']['end']})" in out
    assert f"Obligations no item covers ({len(partial['quality']['uncovered'])})" in out
    assert "Staff must attend the sharps safety course every year." in out
    assert "NEEDS REVIEW" in out and f"Changes against {old}" in out
    assert all(len(line) <= 100 for line in out.splitlines())  # readable in a terminal

    code, listed, _ = cli(capsys, api_url, "list", "--needs-review")
    assert code == 0 and str(new) in listed and str(old) not in listed


def test_highlighting_marks_exactly_the_source_spans() -> None:
    text = "Intro. Staff must wash hands. Gloves <b>must</b> be worn. End."
    wash, gloves = "Staff must wash hands.", "Gloves <b>must</b> be worn."
    result: dict[str, Any] = {
        "checklist": [
            {"item": "Wash", "source": {"start": text.index(wash), "end": text.index(wash) + 22}}
        ],
        "quality": {
            "uncovered": [{"start": text.index(gloves), "end": text.index(gloves) + len(gloves)}]
        },
    }
    page = highlighted(text, result)
    source_tag = '<mark class="source" id="src-1" data-items="1">'
    assert f"{source_tag}Staff must wash hands.</mark>" in page
    assert '<mark class="uncovered">Gloves &lt;b&gt;must&lt;/b&gt; be worn.</mark>' in page
    plain = page.replace(source_tag, "").replace('<mark class="uncovered">', "")
    assert html.unescape(plain.replace("</mark>", "")) == text  # nothing lost or added


def test_the_html_page_in_headless_chromium_highlights_sources(
    database: db.Database,
    api_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    result = extractive_result(V1, max_checklist_items=2)  # two cited, two uncovered
    assert len(result["quality"]["uncovered"]) == 2
    job = add_job(database, status=Phase.COMPLETED, text=V1, result=result, title="Sharps")
    page = tmp_path / "review.html"

    code, _, _ = cli(capsys, api_url, "show", str(job), "--html", "-o", str(page))

    assert code == 0 and page.is_file()
    image = screenshot(page, tmp_path / "review.png")
    cited = pixels_of(image, SOURCE_COLOUR)
    uncovered = pixels_of(image, UNCOVERED_COLOUR)
    assert len(cited) > 2000 and len(uncovered) > 2000  # whole lines of highlight
    # Both in the guideline column (the left three fifths), none in the checklist.
    assert max(x for x, _ in cited + uncovered) < image.width * 0.62
    # The uncovered obligations come after the cited ones in the text, so lower down.
    assert min(y for _, y in uncovered) > max(y for _, y in cited)

    bare = dict(result, checklist=[dict(i, source=None) for i in result["checklist"]])
    control = tmp_path / "control.html"
    control.write_text(client.review_page({"result": bare, "guideline_text": V1}))
    assert pixels_of(screenshot(control, tmp_path / "control.png"), SOURCE_COLOUR) == []


def test_html_of_an_unfinished_job_is_refused(
    database: db.Database, api_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = add_job(database, status=Phase.PENDING)
    code, _, err = cli(capsys, api_url, "show", str(job), "--html")
    assert code == client.EXIT_ERROR
    assert "nothing to review yet" in err

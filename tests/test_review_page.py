"""What a reviewer sees: `guideline-client status`/`show` in a terminal (each item with its
quote, the uncovered obligations, the changes), and `show --html`, rendered by real
headless Chromium and checked on the pixels of its screenshot: the cited passages are
highlighted in the guideline column, the uncovered obligation below them in its own
colour, and a checklist without sources highlights nothing. The API runs for real
(uvicorn, PostgreSQL); results come from the real extractive chain."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guideline_client import commands as client
from guideline_client.review import BIDI_CONTROLS, SOURCE_COLOUR, UNCOVERED_COLOUR, highlighted
from guideline_core import db
from guideline_core.resource import Phase
from guideline_runner.fit import fit
from support.api import ALICE_KEY, dead_kubeconfig, make_settings, running_server
from support.browser import pixels_of, screenshot
from support.documents import PAGE_LABELLED_PDF
from support.rows import add_job
from test_runner_input import cited
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


def test_the_terminal_shows_the_page_and_section_of_each_source(
    database: db.Database, api_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The runner's result for a real PDF with printed page labels (the extractive chain).
    found, result = cited(PAGE_LABELLED_PDF)
    status = fit(result, 200_000).to_status()
    job = add_job(database, status=Phase.COMPLETED, text=found.text, result=status)
    code, out, _ = cli(capsys, api_url, "show", str(job))
    assert code == 0
    for item in status["checklist"]:
        source = item["source"]
        pages = (
            source["page"] if "page_end" not in source else f"{source['page']}-{source['page_end']}"
        )
        where = f"(page {pages} (printed {source['page_label']}), characters {source['start']}-"
        assert where in out, where


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


GUIDELINE = "Intro. Staff must wash hands. Gloves must be worn. End."
WASH = {"start": GUIDELINE.index("Staff"), "end": GUIDELINE.index(" Gloves")}
MALFORMED_OFFSETS: list[Any] = [
    {"start": 30, "end": 10},  # start after end
    {"start": -5, "end": 10},
    {"start": 0, "end": len(GUIDELINE) + 1},
    {"start": 10**30, "end": 10**30 + 1},
    {"start": "7", "end": "20"},
    {"start": 7.0, "end": 20.0},
    {"start": True, "end": 20},
    {"start": None},
    {},
]


def item(name: str, source: Any) -> dict[str, Any]:
    return {"item": name, "priority": "high", "category": "hygiene", "source": source}


def test_malformed_offsets_leave_the_item_unhighlighted_with_a_note() -> None:
    malformed = [
        item(f"bad {i}", {**o, "quote": f"quote {i}"}) for i, o in enumerate(MALFORMED_OFFSETS)
    ]
    checklist = [item("Wash", {**WASH, "quote": "Staff must wash hands."}), *malformed]
    checklist += [item("not a mapping", "text"), "not an item", {"source": 5}]
    result = {
        "checklist": checklist,
        "quality": {"uncovered": [{"start": 99, "end": 3}, "x", {"start": 3}], "coverage": "x"},
    }
    page = client.review_page({"result": result, "guideline_text": GUIDELINE, "title": "T"})

    assert page.count("<mark") == 1 and 'id="src-1"' in page  # only the valid item
    notes = page.count("not highlighted: the offsets of its source do not fit the guideline")
    assert notes == len(MALFORMED_OFFSETS) + 2  # the string and the number sources too
    for i in range(len(MALFORMED_OFFSETS)):
        assert f"“quote {i}”" in page and f'href="#src-{i + 2}"' not in page
    assert "3 uncovered passage(s) not shown: offsets outside the text" in page
    # Not even a result of the wrong shape stops the page.
    for broken in ({"checklist": "x"}, {"quality": []}, {"review": {"reasons": 3}}, []):
        assert "<!doctype html>" in client.review_page({"result": broken, "guideline_text": "a"})


def test_a_malformed_result_renders_through_the_cli(
    database: db.Database, api_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = extractive_result(V1, max_checklist_items=2)
    result["checklist"][0]["source"].update(start=len(V1), end=3)
    job = add_job(database, status=Phase.COMPLETED, text=V1, result=result)
    page = tmp_path / "review.html"

    code, _, err = cli(capsys, api_url, "show", str(job), "--html", "-o", str(page))

    assert code == 0, err
    written = page.read_text()
    assert "not highlighted: the offsets of its source" in written
    assert 'id="src-2"' in written and 'id="src-1"' not in written


def test_bidi_controls_are_shown_as_visible_markers() -> None:
    controls = "".join(map(chr, sorted(BIDI_CONTROLS)))
    text = f"Staff must \u202ewash hands\u202c daily. {controls}"
    quote = "Staff must \u202ewash hands"
    result = {
        "checklist": [item("Wash \u2067it\u2069", {"start": 0, "end": len(quote), "quote": quote})]
    }
    page = client.review_page({"result": result, "guideline_text": text, "title": "A\u202eB"})

    assert not any(chr(c) in page for c in BIDI_CONTROLS)
    guideline = page.split('<section id="guideline">')[1].split("</section>")[0]
    checklist = page.split('<section id="checklist">')[1]
    assert "⟨U+202E⟩</span>wash hands" in guideline and "⟨U+202C⟩" in guideline
    assert all(f"⟨U+{c:04X}⟩" in guideline for c in BIDI_CONTROLS)
    assert '“Staff must <span class="bidi">⟨U+202E⟩</span>wash hands”' in checklist
    assert "⟨U+2067⟩</span>it" in checklist and 'A<span class="bidi">⟨U+202E⟩</span>B' in page


def test_thousands_of_nested_sources_highlight_in_one_pass() -> None:
    """5,000 items whose sources nest (item i covers [i, 10,000 - i)): every piece is
    covered by up to 5,000 of them. Each mark names its lowest item and a count, so the page
    grows linearly with the items (listing every covering item made it quadratic)."""
    n = 5000
    text = "x" * (2 * n)
    checklist = [item(f"i{i}", {"start": i, "end": 2 * n - i, "quote": "x"}) for i in range(n)]
    page = highlighted(text, {"checklist": checklist})

    assert all(page.count(f'id="src-{i}"') == 1 for i in range(1, n + 1))
    assert page.count("<mark") == 2 * n - 1  # one per piece between two cuts
    assert f'data-items="1 +{n - 1}"' in page  # the middle piece: all of them
    assert len(page) < 120 * n
    plain = re.sub(r"<[^>]+>", "", page)
    assert plain == text


def test_every_place_an_item_quotes_is_highlighted_its_first_anchored() -> None:
    rule = "Staff must wash hands."
    text = f"Ward A\n{rule}\nWard B\nGloves must be worn.\nWard C\n{rule}\n"
    first, again = text.index(rule), text.rindex(rule)
    gloves = text.index("Gloves must be worn.")

    def place(start: int, quote: str = rule) -> dict[str, Any]:
        return {"quote": quote, "start": start, "end": start + len(quote)}

    washing = item("Wash hands", place(first))
    washing["sources"] = [place(first), place(again)]
    wearing = item("Wear gloves", place(gloves, "Gloves must be worn."))
    wearing["sources"] = [wearing["source"]]

    page = highlighted(text, {"checklist": [washing, wearing]})

    marks = re.findall(
        r'<mark class="source"( id="src-\d")? data-items="(\d)">([^<]*)</mark>', page
    )
    assert marks == [
        (' id="src-1"', "1", rule),
        (' id="src-2"', "2", "Gloves must be worn."),
        ("", "1", rule),  # the second place: highlighted, the link goes to the first
    ]
    assert page.count('id="src-1"') == 1

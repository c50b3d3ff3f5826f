"""The export formats, each checked by an independent reader: FHIR by fhir.resources
(its R4B models: R4 content of these resources is valid R4B), OSCAL by compliance-trestle
(NIST OSCAL 1.1.3 models), CSV by the csv module, XLSX by openpyxl reading it back,
Markdown by markdown-it-py (CommonMark), HTML by the standard library's parser."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from html.parser import HTMLParser
from typing import Any

import openpyxl
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.plandefinition import PlanDefinition
from fhir.resources.R4B.questionnaire import Questionnaire
from guideline_api.exports import FORMATS, content_disposition, from_accept, only_wildcards
from guideline_api.exports.provenance import build, text_sha256
from markdown_it import MarkdownIt
from support.exports import EVENT_ID, HOSTILE_ITEMS, completed_job, superseding_changes
from trestle.oscal.catalog import Catalog

GENERATED = "2026-02-02T10:00:00Z"
LATER = "2026-03-03T11:11:11Z"
DIGEST = text_sha256("the guideline")
EXT = "https://guideline-ingest.dev/fhir/StructureDefinition/"


def render(name: str, job: dict[str, Any] | None = None, generated: str = GENERATED) -> bytes:
    return FORMATS[name].render(build(job or completed_job(), DIGEST, generated))


def fhir_resources(job: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    bundle = json.loads(render("fhir", job))
    Bundle.model_validate(bundle)
    return {entry["resource"]["resourceType"]: entry["resource"] for entry in bundle["entry"]}


def ext(element: dict[str, Any], url: str) -> dict[str, Any]:
    (found,) = [e for e in element.get("extension", []) if e["url"] == url]
    return found


def sub(extension: dict[str, Any], name: str) -> Any:
    (found,) = [e for e in extension["extension"] if e["url"] == name]
    return next(v for k, v in found.items() if k.startswith("value"))


# ------------------------------------------------------------------------------ FHIR


def test_fhir_bundle_is_valid_r4_content_with_one_action_and_question_per_item() -> None:
    bundle = json.loads(render("fhir"))
    assert bundle["type"] == "collection" and bundle["timestamp"] == GENERATED
    Bundle.model_validate(bundle)
    resources = fhir_resources()
    plan = PlanDefinition.model_validate(resources["PlanDefinition"]).model_dump(mode="json")
    questionnaire = Questionnaire.model_validate(resources["Questionnaire"])
    DocumentReference.model_validate(resources["DocumentReference"])
    actions = resources["PlanDefinition"]["action"]
    assert [a["title"] for a in actions] == [i["item"] for i in HOSTILE_ITEMS]
    assert plan["meta"]["profile"] == [
        "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-shareableplandefinition"
    ]
    questions = [q for q in resources["Questionnaire"]["item"] if q["type"] == "boolean"]
    assert [q["linkId"] for q in questions] == [a["id"] for a in actions]
    assert [q["text"] for q in questions] == [a["title"] for a in actions]
    assert len(questionnaire.item) == len(HOSTILE_ITEMS) + 1  # and the review notice
    assert plan["name"] == "HandHygieneHandewaschen"
    origin = ext(resources["PlanDefinition"], EXT + "export-provenance")
    assert sub(origin, "needs_review") is True and sub(origin, "degraded") is False
    assert sub(origin, "document_sha256") == DIGEST


def test_fhir_action_keeps_quote_offsets_page_section_and_grade_verbatim() -> None:
    first, second, _, ungrounded = fhir_resources()["PlanDefinition"]["action"]
    source = ext(first, "https://guideline-ingest.dev/fhir/StructureDefinition/checklist-source")
    assert sub(source, "quote") == "=Staff must wash hands"
    assert (sub(source, "start"), sub(source, "end")) == (14, 36)
    assert sub(source, "page") == "3" and sub(source, "page_label") == "iii"
    assert sub(source, "section") == "1 Hand hygiene"
    grade = ext(first, "https://guideline-ingest.dev/fhir/StructureDefinition/recommendation-grade")
    assert sub(grade, "text") == "Strong, high-quality evidence"
    assert (sub(grade, "start"), sub(grade, "end")) == (63, 92)
    strength = ext(first, "http://hl7.org/fhir/StructureDefinition/cqf-strengthOfRecommendation")
    concept = strength["valueCodeableConcept"]
    assert concept["coding"][0]["code"] == "strong"
    assert concept["text"] == "Strong, high-quality evidence"
    quality = ext(first, "http://hl7.org/fhir/StructureDefinition/cqf-qualityOfEvidence")
    assert quality["valueCodeableConcept"]["coding"][0]["code"] == "high"
    weak = ext(second, "http://hl7.org/fhir/StructureDefinition/cqf-strengthOfRecommendation")
    assert weak["valueCodeableConcept"]["coding"][0]["code"] == "weak"
    page = ext(second, "https://guideline-ingest.dev/fhir/StructureDefinition/checklist-source")
    assert sub(page, "page") == "3-4"
    assert "documentation" not in ungrounded
    grounded = ext(
        ungrounded, "https://guideline-ingest.dev/fhir/StructureDefinition/checklist-grounded"
    )
    assert grounded["valueBoolean"] is False


def test_fhir_document_sha256_and_predecessor_of_a_superseding_job() -> None:
    job = completed_job(changes=superseding_changes(), document_sha256="ab" * 32)
    resources = fhir_resources(job)
    document = resources["DocumentReference"]
    assert document["masterIdentifier"]["value"] == "ab" * 32
    assert "result.document.sha256" in document["description"]
    related = resources["PlanDefinition"]["relatedArtifact"]
    predecessor = [r for r in related if r["type"] == "predecessor"]
    assert predecessor[0]["resource"].endswith("/0193d6a4-0000-7000-8000-000000000001")
    changes = [
        a["extension"]
        for a in resources["PlanDefinition"]["action"]
        for a in [a]
        if any(e["url"].endswith("checklist-change") for e in a["extension"])
    ]
    assert len(changes) == len(HOSTILE_ITEMS)
    without = fhir_resources(completed_job())["DocumentReference"]
    assert without["masterIdentifier"]["value"] == DIGEST
    assert "computed at export" in without["description"]


# ------------------------------------------------------------------------------ OSCAL


def test_oscal_catalog_validates_with_trestle_sections_as_groups() -> None:
    data = json.loads(render("oscal"))
    catalog = Catalog.parse_obj(data["catalog"])
    assert catalog.metadata.oscal_version.__root__ == "1.1.3"
    groups = data["catalog"]["groups"]
    assert [g["title"] for g in groups] == ["1 Hand hygiene", "2 Devices", "Checklist"]
    controls = [c for g in groups for c in g.get("controls", [])]
    assert [c["id"] for c in controls] == [f"item-{n}" for n in range(1, 5)]
    first = controls[0]
    parts = {p["name"]: p["prose"] for p in first["parts"]}
    assert parts == {"statement": HOSTILE_ITEMS[0]["item"], "guidance": "=Staff must wash hands"}
    props = {p["name"]: p["value"] for p in first["props"]}
    assert props["page"] == "3" and props["grade"] == "Strong, high-quality evidence"
    assert (props["source-start"], props["source-end"]) == ("14", "36")
    assert props["strength"] == "must" and props["grounded"] == "true"
    (resource,) = data["catalog"]["back-matter"]["resources"]
    assert resource["rlinks"][0]["hashes"] == [{"algorithm": "SHA-256", "value": DIGEST}]
    meta = {p["name"]: p["value"] for p in data["catalog"]["metadata"]["props"]}
    assert meta["needs-review"] == "true" and meta["event-id"] == EVENT_ID
    assert data["catalog"]["metadata"]["remarks"].startswith("**NEEDS REVIEW")


def test_oscal_without_sections_is_one_group_and_carries_changes() -> None:
    items = [{k: v for k, v in i.items() if k != "section"} for i in HOSTILE_ITEMS]
    for item in items:  # a section sits on the item or (as the runner writes it) its source
        if item.get("source"):
            item["source"] = {k: v for k, v in item["source"].items() if k != "section"}
    data = json.loads(render("oscal", completed_job(items, changes=superseding_changes())))
    Catalog.parse_obj(data["catalog"])
    (group,) = data["catalog"]["groups"]
    assert len(group["controls"]) == len(items)
    meta = {p["name"]: p["value"] for p in data["catalog"]["metadata"]["props"]}
    assert meta["supersedes"] == "0193d6a4-0000-7000-8000-000000000001"
    assert meta["items-removed"] == "1" and meta["removed-1"] == "Old item"
    changes = [p["value"] for c in group["controls"] for p in c["props"] if p["name"] == "change"]
    assert changes == ["changed", "added", "unchanged", "unchanged"]
    empty = json.loads(render("oscal", completed_job([])))
    Catalog.parse_obj(empty["catalog"])


# ------------------------------------------------------------------------------ CSV, XLSX


def csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(body[3:].decode("utf-8"), newline="")))


def test_csv_is_a_header_and_one_row_per_item_defused() -> None:
    body = render("csv")
    assert b"\r\n" in body and body.endswith(b"\r\n")
    header, *rows = csv_rows(body)
    assert header[:12] == [
        "item", "strength", "grade", "section", "page", "quote", "start", "end", "sources",
        "grounded", "category", "priority",
    ]  # fmt: skip
    assert len(rows) == len(HOSTILE_ITEMS)
    by = [dict(zip(header, row, strict=True)) for row in rows]
    assert by[0]["item"] == '\'=HYPERLINK("http://evil","click")'
    assert by[0]["quote"] == "'=Staff must wash hands"
    assert by[1]["item"].startswith("'+") and by[1]["quote"].startswith("'@")
    assert by[2]["item"] == "'-Flush catheters\tdaily"
    assert by[2]["quote"] == "'-Catheters may be flushed <daily>\r\n# & [checked](http://x)."
    assert by[0]["page"] == "3" and by[1]["page"] == "3-4" and by[0]["start"] == "14"
    assert by[3]["quote"] == "" and by[3]["grounded"] == "false"
    assert {r["event_id"] for r in by} == {EVENT_ID}
    assert {r["needs_review"] for r in by} == {"true"}
    assert {r["document_sha256"] for r in by} == {DIGEST}
    for row in rows:  # nothing a spreadsheet would evaluate
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)
    assert "change" not in header


def test_csv_of_a_superseding_job_has_a_change_column() -> None:
    header, *rows = csv_rows(render("csv", completed_job(changes=superseding_changes())))
    column = header.index("change")
    assert [r[column] for r in rows] == ["changed", "added", "unchanged", "unchanged"]


def test_xlsx_reads_back_verbatim_as_strings_with_provenance_sheet() -> None:
    workbook = openpyxl.load_workbook(io.BytesIO(render("xlsx")))
    assert workbook.sheetnames == ["Checklist", "Provenance"]
    sheet = workbook["Checklist"]
    header = [c.value for c in sheet[1]]
    rows = list(sheet.iter_rows(min_row=2))
    assert len(rows) == len(HOSTILE_ITEMS)
    item, quote = rows[0][header.index("item")], rows[0][header.index("quote")]
    assert item.value == HOSTILE_ITEMS[0]["item"] and item.data_type == "s"
    assert quote.value == "=Staff must wash hands" and quote.data_type == "s"
    assert rows[0][header.index("start")].value == 14
    with zipfile.ZipFile(io.BytesIO(render("xlsx"))) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml  # no cell is a formula
    provenance = dict(workbook["Provenance"].iter_rows(min_row=2, values_only=True))
    assert provenance["review"].startswith("NEEDS REVIEW")
    assert provenance["event_id"] == EVENT_ID and provenance["document_sha256"] == DIGEST


# ------------------------------------------------------------------------------ Markdown, HTML


def test_markdown_checklist_with_quotes_renders_no_markup_from_the_result() -> None:
    text = render("md").decode()
    assert text.count("\n- [ ] ") == len(HOSTILE_ITEMS)
    rendered = MarkdownIt("commonmark").render(text)
    assert "<script" not in rendered and "<a " not in rendered
    assert rendered.count("<h3>") == 3  # the two sections and the items without one
    assert "<h1>" in rendered and rendered.count("<h1>") == 1
    assert "&lt;daily&gt;\n# &amp; [checked](http://x)." in rendered
    assert "<li>[ ] <strong>=HYPERLINK(&quot;http://evil&quot;,&quot;click&quot;)</strong>" in (
        rendered
    )
    assert "p. 3-4" in text and "NEEDS REVIEW" in text


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.boxes = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.boxes += ("role", "checkbox") in attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_a_printable_checklist_escaped() -> None:
    page = _Page()
    page.feed(render("html").decode())
    assert page.boxes == len(HOSTILE_ITEMS)
    assert "script" not in page.tags and "a" not in page.tags
    text = "".join(page.text)
    assert "+Wear gloves <script>alert(1)</script>" in text
    assert "NEEDS REVIEW" in text and "p. 3-4" in text and "=Staff must wash hands" in text


def test_an_item_quoted_in_several_places_lists_every_source() -> None:
    items = [dict(i) for i in HOSTILE_ITEMS]
    first = items[0]["source"]
    items[0]["sources"] = [
        {**first, "page": 3},
        {**first, "start": 300, "end": 322, "page": 7},
        {**first, "start": 900, "end": 922},
    ]
    job = completed_job(items)
    places = "14-36 (p. 3); 300-322 (p. 7); 900-922"

    header, *rows = csv_rows(render("csv", job))
    by = [dict(zip(header, row, strict=True)) for row in rows]
    assert by[0]["sources"] == places and by[0]["start"] == "14"
    # An item with one source lists it; an ungrounded one none; a result written before
    # `sources` existed lists its `source`.
    assert by[1]["sources"] == "94-116 (p. 3-4)" and by[3]["sources"] == ""
    sheet = openpyxl.load_workbook(io.BytesIO(render("xlsx", job)))["Checklist"]
    xlsx_header = [c.value for c in sheet[1]]
    assert sheet.cell(2, xlsx_header.index("sources") + 1).value == places
    markdown = MarkdownIt("commonmark").render(render("md", job).decode())
    assert f"quoted 3 times: {places}" in markdown
    assert markdown.count("quoted 3 times") == 1 and "quoted 1 times" not in markdown
    page = _Page()
    page.feed(render("html", job).decode())
    assert f"quoted 3 times: {places}" in "".join(page.text)
    # FHIR: one checklist-source extension per place; OSCAL: the places as a prop.
    action = fhir_resources(job)["PlanDefinition"]["action"][0]
    found = [e for e in action["extension"] if e["url"] == EXT + "checklist-source"]
    assert [(sub(e, "start"), sub(e, "end")) for e in found] == [(14, 36), (300, 322), (900, 922)]
    data = json.loads(render("oscal", job))
    Catalog.parse_obj(data["catalog"])
    controls = [c for g in data["catalog"]["groups"] for c in g.get("controls", [])]
    props = [{p["name"]: p["value"] for p in c["props"]} for c in controls]
    assert props[0]["source-places"] == places and "source-places" not in props[1]


# ------------------------------------------------------------------------------ every format


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_says_when_a_result_needs_review(name: str) -> None:
    def visible(body: bytes) -> str:
        if name == "xlsx":
            workbook = openpyxl.load_workbook(io.BytesIO(body))
            return json.dumps([list(r) for r in workbook["Provenance"].values])
        return body.decode("utf-8")

    flagged, clean = visible(render(name)), visible(render(name, completed_job(needs_review=False)))
    if name == "csv":  # a column on every row
        for body, expected in ((flagged, "true"), (clean, "false")):
            header, *rows = csv.reader(io.StringIO(body.removeprefix("\ufeff")))
            assert {row[header.index("needs_review")] for row in rows} == {expected}
    else:
        assert "NEEDS REVIEW" in flagged and "NEEDS REVIEW" not in clean
    assert EVENT_ID in flagged and DIGEST in flagged and "extractive-v1" in flagged


@pytest.mark.parametrize("name", list(FORMATS))
def test_same_result_same_bytes_apart_from_the_generation_time(name: str) -> None:
    assert render(name) == render(name)
    first, later = render(name, generated=GENERATED), render(name, generated=LATER)
    if name == "xlsx":
        first, later = (_xlsx_without_time(b, t) for b, t in ((first, GENERATED), (later, LATER)))
    else:
        first, later = first.replace(GENERATED.encode(), b""), later.replace(LATER.encode(), b"")
    assert first == later


def _xlsx_without_time(body: bytes, generated: str) -> dict[str, bytes]:
    """Each member of the workbook with the generation time taken out."""
    stamp = re.escape(generated.removesuffix("Z"))
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {
            name: re.sub(stamp.encode() + rb"Z?", b"", archive.read(name))
            for name in archive.namelist()
        }


def test_fields_a_result_does_not_have_are_left_empty() -> None:
    plain = [{"item": "Wash hands", "priority": "high", "category": "hygiene", "source": None}]
    job = completed_job(plain, needs_review=False)
    header, row = csv_rows(render("csv", job))
    values = dict(zip(header, row, strict=True))
    assert [values[k] for k in ("strength", "grade", "section", "page", "quote")] == [""] * 5
    action = fhir_resources(job)["PlanDefinition"]["action"][0]
    urls = [e["url"].rsplit("/", 1)[1] for e in action["extension"]]
    assert urls == ["checklist-priority", "checklist-grounded"]


# ------------------------------------------------------------------------------ HTTP helpers


def test_content_disposition_is_ascii_with_the_utf8_name_beside() -> None:
    value = content_disposition("Hand hygiene \u2013 Händewaschen", EVENT_ID, "csv")
    assert value.isascii()
    assert 'filename="hand-hygiene-handewaschen-0193d6a4.csv"' in value
    assert "filename*=UTF-8''hand-hygiene-h%C3%A4ndewaschen-0193d6a4.csv" in value
    assert 'filename="guideline-0193d6a4.md"' in content_disposition('"/\\;', EVENT_ID, "md")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/csv", "csv"),
        ("application/fhir+json", "fhir"),
        ('application/json; profile="http://csrc.nist.gov/ns/oscal/1.0"', "oscal"),
        ("text/html;q=0.5, text/markdown", "md"),
        ("text/html, text/markdown;q=0.9, */*;q=0.1", "html"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
        ("application/json", None),  # JSON without OSCAL's profile names no format
        ("image/png, text/csv;q=0", None),
    ],
)
def test_accept_negotiation(accept: str, expected: str | None) -> None:
    found = from_accept(accept)
    assert (found.name if found else None) == expected


def test_only_wildcards() -> None:
    assert only_wildcards(None) and only_wildcards("*/*") and only_wildcards("*/*;q=0.5")
    assert not only_wildcards("text/csv, */*")

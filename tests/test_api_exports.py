"""GET /v1/jobs/{event_id}/export through the real app and PostgreSQL (rows written as the
operator would; no cluster), every response checked against the served OpenAPI document;
and `guideline-client export` against a real server."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from guideline_core import db
from guideline_core.resource import Phase
from support.api import (
    ADMIN_KEY,
    BOB_KEY,
    auth,
    dead_kubeconfig,
    make_settings,
    problem,
    running_server,
)
from support.cli import run_cli
from support.exports import HOSTILE_ITEMS, TEXT, completed_job
from support.rows import add_job
from trestle.oscal.catalog import Catalog

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA = {
    "fhir": "application/fhir+json",
    "oscal": 'application/json; profile="http://csrc.nist.gov/ns/oscal/1.0"',
    "csv": "text/csv; charset=utf-8",
    "xlsx": XLSX,
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
EXTENSIONS = {"fhir": "fhir.json", "oscal": "oscal.json", "xlsx": "xlsx", "md": "md"}


def completed(database: db.Database, **kw: object) -> str:
    """A COMPLETED job of alice with the hostile checklist."""
    result = completed_job(**kw)["result"]  # type: ignore[arg-type]
    return str(
        add_job(database, status=Phase.COMPLETED, result=result, text=TEXT, title="Hand hygiene")
    )


@pytest.mark.parametrize("name", list(MEDIA))
def test_each_format_its_media_type_and_file_name(
    client: TestClient, database: db.Database, name: str
) -> None:
    eid = completed(database)
    response = client.get(f"/v1/jobs/{eid}/export", params={"format": name}, headers=auth())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MEDIA[name]
    stem = f"hand-hygiene-{eid[:8]}.{EXTENSIONS.get(name, name)}"
    assert response.headers["content-disposition"] == (
        f"attachment; filename=\"{stem}\"; filename*=UTF-8''{stem}"
    )
    assert eid in (
        response.text
        if name != "xlsx"
        else str(list(openpyxl.load_workbook(io.BytesIO(response.content))["Provenance"].values))
    )


def test_fhir_and_oscal_over_http_validate_and_carry_the_texts_sha256(
    client: TestClient, database: db.Database
) -> None:
    eid = completed(database)
    digest = hashlib.sha256(TEXT.encode("utf-8")).hexdigest()
    fhir = client.get(f"/v1/jobs/{eid}/export?format=fhir", headers=auth()).json()
    Bundle.model_validate(fhir)
    document = next(e["resource"] for e in fhir["entry"] if e["resource"]["id"].startswith("gu"))
    assert document["masterIdentifier"]["value"] == digest
    oscal = client.get(f"/v1/jobs/{eid}/export?format=oscal", headers=auth()).json()
    Catalog.parse_obj(oscal["catalog"])
    (resource,) = oscal["catalog"]["back-matter"]["resources"]
    assert resource["rlinks"][0]["hashes"][0]["value"] == digest


def test_csv_over_http_is_one_row_per_stored_item(
    client: TestClient, database: db.Database
) -> None:
    eid = completed(database)
    body = client.get(f"/v1/jobs/{eid}/export?format=csv", headers=auth()).content
    header, *rows = csv.reader(io.StringIO(body.decode("utf-8-sig"), newline=""))
    assert len(rows) == len(HOSTILE_ITEMS) and header[0] == "item"
    assert rows[0][0] == "'" + HOSTILE_ITEMS[0]["item"]


@pytest.mark.parametrize(
    ("accept", "name"),
    [
        ("application/fhir+json", "fhir"),
        ('application/json; profile="http://csrc.nist.gov/ns/oscal/1.0"', "oscal"),
        ("text/csv", "csv"),
        (XLSX, "xlsx"),
        ("text/markdown", "md"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "html"),
        ("text/html;q=0.2, text/csv;q=0.9", "csv"),
    ],
)
def test_accept_chooses_the_format(
    client: TestClient, database: db.Database, accept: str, name: str
) -> None:
    eid = completed(database)
    response = client.get(f"/v1/jobs/{eid}/export", headers={**auth(), "Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MEDIA[name]


def test_format_wins_over_accept_and_bad_choices_are_problems(
    client: TestClient, database: db.Database
) -> None:
    eid = completed(database)
    url = f"/v1/jobs/{eid}/export"
    response = client.get(f"{url}?format=md", headers={**auth(), "Accept": "text/csv"})
    assert response.headers["content-type"] == MEDIA["md"]
    body = problem(client.get(f"{url}?format=pdf", headers=auth()), 422)
    assert body["reason"] == "unknown_export_format" and "fhir|oscal" in body["detail"]
    body = problem(client.get(url, headers={**auth(), "Accept": "*/*"}), 422)
    assert body["reason"] == "unknown_export_format"
    body = problem(client.get(url, headers={**auth(), "Accept": "image/png"}), 406)
    assert body["reason"] == "not_acceptable"
    body = problem(client.get(url, headers={**auth(), "Accept": "application/json"}), 406)
    assert body["reason"] == "not_acceptable"
    body = problem(client.get("/v1/jobs/abc/export?format=csv", headers=auth()), 422)
    assert body["reason"] == "invalid_event_id"


def test_another_tenants_or_unknown_job_is_404_and_unfinished_409(
    client: TestClient, database: db.Database
) -> None:
    eid = completed(database)
    body = problem(client.get(f"/v1/jobs/{eid}/export?format=csv", headers=auth(BOB_KEY)), 404)
    assert body["reason"] == "not_found"
    unknown = "0193d6a4-7f3e-7c2a-9b1d-2f6e8a4c5b10"
    problem(client.get(f"/v1/jobs/{unknown}/export?format=csv", headers=auth()), 404)
    assert client.get(f"/v1/jobs/{eid}/export?format=csv", headers=auth(ADMIN_KEY)).is_success
    for status in (Phase.PENDING, Phase.PROCESSING, Phase.FAILED, Phase.CANCELLED):
        other = add_job(database, status=status)
        response = client.get(f"/v1/jobs/{other}/export?format=fhir", headers=auth())
        body = problem(response, 409)
        assert body["reason"] == "job_not_completed" and status.value in body["detail"]
    problem(client.get(f"/v1/jobs/{eid}/export?format=csv"), 401)


def test_a_superseding_job_exports_its_changes(client: TestClient, database: db.Database) -> None:
    old_items = [dict(HOSTILE_ITEMS[0], item="Wash hands"), HOSTILE_ITEMS[3]]
    old = add_job(
        database,
        status=Phase.COMPLETED,
        result=completed_job(old_items)["result"],
        text=TEXT,
    )
    new = add_job(
        database,
        status=Phase.COMPLETED,
        result=completed_job()["result"],
        text=TEXT,
        supersedes=old,
    )
    body = client.get(f"/v1/jobs/{new}/export?format=csv", headers=auth()).content
    header, *rows = csv.reader(io.StringIO(body.decode("utf-8-sig"), newline=""))
    changes = [row[header.index("change")] for row in rows]
    assert changes == ["changed", "added", "added", "unchanged"]
    fhir = client.get(f"/v1/jobs/{new}/export?format=fhir", headers=auth()).json()
    plan = fhir["entry"][0]["resource"]
    (predecessor,) = [r for r in plan["relatedArtifact"] if r["type"] == "predecessor"]
    assert predecessor["resource"].endswith(str(old))


def test_an_untitled_job_is_a_guideline_file(client: TestClient, database: db.Database) -> None:
    eid = str(add_job(database, status=Phase.COMPLETED, result=completed_job()["result"]))
    response = client.get(f"/v1/jobs/{eid}/export?format=csv", headers=auth())
    assert f'filename="guideline-{eid[:8]}.csv"' in response.headers["content-disposition"]


def test_the_unversioned_alias_serves_exports_too(
    client: TestClient, database: db.Database
) -> None:
    eid = completed(database)
    response = client.get(f"/jobs/{eid}/export?format=md", headers=auth())
    assert response.status_code == 200 and response.text.startswith("# Hand hygiene")


def test_the_cli_downloads_an_export(database: db.Database, tmp_path: Path) -> None:
    eid = completed(database)
    settings = make_settings(database.url, dead_kubeconfig(tmp_path), dispatcher_enabled=False)
    with running_server(settings) as url:
        out = tmp_path / "checklist.xlsx"
        done = run_cli(url, "export", eid, "--format", "xlsx", "-o", str(out))
        assert done.returncode == 0, done.stderr
        workbook = openpyxl.load_workbook(out)
        assert workbook["Checklist"].max_row == len(HOSTILE_ITEMS) + 1
        shown = run_cli(url, "export", eid, "--format", "md")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("# Hand hygiene") and "- [ ] " in shown.stdout
        fhir = run_cli(url, "export", eid, "--format", "fhir", "-o", str(tmp_path / "b.json"))
        assert fhir.returncode == 0, fhir.stderr
        Bundle.model_validate(json.loads((tmp_path / "b.json").read_text()))
        refused = run_cli(url, "export", eid, "--format", "csv", key=BOB_KEY)
        assert refused.returncode == 2 and "404 not_found" in refused.stderr
        binary = run_cli(url, "export", eid, "--format", "xlsx")
        assert binary.returncode == 2 and "-o" in binary.stderr


GENERATED = re.compile(rb'(generated.at[^0-9]*|"timestamp":")[0-9T:-]+Z')


@pytest.mark.parametrize("name", ["fhir", "oscal", "csv", "md", "html"])
def test_exporting_twice_gives_the_same_bytes_but_the_generation_time(
    client: TestClient, database: db.Database, name: str
) -> None:
    eid = completed(database)
    first, second = (
        client.get(f"/v1/jobs/{eid}/export?format={name}", headers=auth()).content for _ in range(2)
    )
    assert len(first) > 1000
    assert (GENERATED.search(first) is None) == (name == "csv")  # a CSV has no time at all
    assert GENERATED.sub(b"", first) == GENERATED.sub(b"", second)

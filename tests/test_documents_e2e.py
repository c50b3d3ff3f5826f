"""Documents end to end on the real node (kubelet, containerd, the runner image), real
PostgreSQL and the operator:
- a PDF uploaded to the real API (listening where the pods reach it): its GuidelineJob
  carries only a reference, the runner pod fetches the document from the API with its
  projected ServiceAccount token, extracts it and puts the text back; the job completes with
  page numbers on its sources, which point into the text `?include=text` returns;
- a GuidelineJob whose guideline is a document in a ConfigMap (`spec.guidelineTextFrom`, no
  API needed): the pod gets only that key, read-only, and its token for the API; a PDF
  completes with page numbers on its sources; an unreadable document ends FAILED
  `document_unreadable` after one pod (no retry), mirrored into the row."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from guideline_core import resource as gj
from pypdf import PdfReader, PdfWriter
from support.api import api_http, auth, dispatched_row
from support.cluster import REPO_ROOT, LocalCluster, wait_for
from support.documents import guideline, pdftotext, words

pytestmark = [pytest.mark.cluster, pytest.mark.node]
DEMO_PDF = REPO_ROOT / "examples" / "uspstf-screening.pdf"

SOURCE_PDF = guideline("nist-sp800-63b-authentication", ".pdf")
PAGES = (5, 6, 7, 8)  # physical pages of the source taken into the small PDF (1-based)


def small_pdf() -> bytes:
    """Four pages of a real guideline (the rules of memorized secrets), as one PDF."""
    reader = PdfReader(SOURCE_PDF)
    writer = PdfWriter()
    for number in PAGES:
        writer.add_page(reader.pages[number - 1])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def apply_document_job(stack: Any, name: str, document: bytes, **spec: Any) -> None:
    """A ConfigMap holding `document` in binaryData and a GuidelineJob pointing at it."""
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-doc"},
        "binaryData": {"guideline.pdf": base64.b64encode(document).decode()},
    }
    job = {
        "apiVersion": gj.API_VERSION,
        "kind": gj.KIND,
        "metadata": {"name": name},
        "spec": {
            "guidelineTextFrom": {
                "configMapKeyRef": {"name": f"{name}-doc", "key": "guideline.pdf"}
            },
            "provider": "extractive",
            **spec,
        },
    }
    stack.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": [config_map, job]}),
    )


def test_a_pdf_in_a_config_map_completes_with_page_numbers(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack(operator={"runner_api_url": ""})  # no API: the text stays in the pod
    document = small_pdf()
    apply_document_job(stack, "pdf-doc", document)
    done = stack.wait_for_phase("pdf-doc", "COMPLETED", "FAILED")
    status = done["status"]
    assert status["phase"] == "COMPLETED", status
    result = status["result"]
    assert result["provider"] == "extractive"
    info = result["document"]
    assert info["media_type"] == "application/pdf" and info["pages"] == len(PAGES)
    assert info["bytes"] == len(document) and info["extractor"] == "pypdfium2"
    # Every source has its page, and pdftotext finds the quote's words on that page of the
    # document the job was given.
    path = tmp_path / "small.pdf"
    path.write_bytes(document)
    page_words = [set(words(pdftotext(path, n, n))) for n in range(1, len(PAGES) + 1)]
    sources = [item["source"] for item in result["checklist"] if item["source"]]
    assert len(sources) >= 5
    for source in sources:
        assert 1 <= source["page"] <= len(PAGES)
        last = source.get("page_end", source["page"])
        quote = set(words(source["quote"]))
        found = set().union(*page_words[source["page"] - 1 : last])
        assert len(quote & found) >= 0.8 * len(quote), source
    # The pod got only that key, read-only, and its token for the API.
    [pod] = stack.pods_of("pdf-doc")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["input"]["configMap"]["items"] == [{"key": "guideline.pdf", "path": "guideline"}]
    token = volumes["runner-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "guideline-ingest.dev/runner"
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["input"]["readOnly"] and mounts["runner-token"]["readOnly"]
    # The row mirrors the result with its citations; it has no text (no API to put it).
    row = stack.row(status["eventId"])
    assert row is not None and row["result"]["checklist"] == result["checklist"]


def test_an_unreadable_document_fails_for_good_after_one_pod(make_stack: Any) -> None:
    stack = make_stack(operator={"runner_api_url": ""})  # no API: the text stays in the pod
    truncated = small_pdf()[:2000]  # a PDF header and a few objects, no page tree, no xref
    apply_document_job(stack, "bad-doc", truncated, maxRetries=3)
    done = stack.wait_for_phase("bad-doc", "COMPLETED", "FAILED")
    status = done["status"]
    assert status["phase"] == "FAILED", status
    assert status["error"]["reason"] == "document_unreadable"
    assert "opens in a reader" in status["error"]["message"]
    # No retry: one pod, though maxRetries allows three more.
    assert status["attempts"] == 1
    assert len(stack.pods_of("bad-doc")) == 1
    [pod] = stack.pods_of("bad-doc")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == gj.RunnerExit.DO_NOT_RETRY

    def mirrored() -> dict[str, Any] | None:
        row = stack.row(status["eventId"])
        return row if row and row["status"] == "FAILED" else None

    row = wait_for(mirrored, timeout=30, interval=0.2, message="the row mirrored")
    assert row["error"]["reason"] == "document_unreadable"


def test_a_pdf_uploaded_to_the_api_completes_with_page_numbers(
    make_stack: Any, cluster: LocalCluster
) -> None:
    stack = make_stack()
    document = DEMO_PDF.read_bytes()
    with (
        stack.api_server() as url,
        api_http(url) as api,
        httpx.Client(base_url=url, timeout=60) as uploads,  # the checked client reads bodies
    ):
        answer = uploads.post(
            "/v1/jobs",
            files={"file": ("guideline.bin", document, "application/octet-stream")},
            data={"title": "USPSTF", "provider": "extractive"},
            headers=auth(),
        )
        assert answer.status_code == 202, answer.text
        event_id = answer.json()["event_id"]
        # The GuidelineJob names the document; its text is nowhere in etcd.
        row = dispatched_row(stack.database, event_id)
        spec = stack.get(row["cr_name"])["spec"]
        assert "guidelineText" not in spec and len(json.dumps(spec)) < 4096
        assert spec["documentRef"]["sha256"] == hashlib.sha256(document).hexdigest()

        def finished() -> dict[str, Any] | None:
            job = api.get(f"/v1/jobs/{event_id}", params={"include": "text"}, headers=auth())
            body = job.json()
            return body if body["status"] in ("COMPLETED", "FAILED") else None

        job = wait_for(finished, timeout=240, interval=1, message=f"{event_id} finished")
    assert job["status"] == "COMPLETED", job.get("error")
    result, text = job["result"], job["guideline_text"]
    info = result["document"]
    assert info["media_type"] == "application/pdf" and info["pages"] == 17
    assert info["sha256"] == hashlib.sha256(document).hexdigest()
    assert info["characters"] == len(text)
    # The text is the runner's extraction, the same words poppler reads.
    assert len(set(words(text)) ^ set(words(pdftotext(DEMO_PDF)))) < 0.02 * len(set(words(text)))
    sources = [item["source"] for item in result["checklist"] if item["source"]]
    assert len(sources) >= 10
    pages = {n: set(words(pdftotext(DEMO_PDF, n, n))) for n in range(1, 18)}
    for source in sources:
        assert text[source["start"] : source["end"]] == source["quote"]
        first, last = source["page"], source.get("page_end", source["page"])
        found = set().union(*(pages[n] for n in range(first, last + 1)))
        quote = set(words(source["quote"]))
        assert len(quote & found) >= 0.8 * len(quote), source
    assert len({s["page"] for s in sources}) >= 5  # cited across the document

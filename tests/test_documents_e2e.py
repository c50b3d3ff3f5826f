"""A GuidelineJob whose guideline is a document in a ConfigMap (`spec.guidelineTextFrom`),
end to end on the local control plane with the node agent, real PostgreSQL, the operator and
the runner in its Job pod (no API needed): the pod gets only that key, read-only, and its
token for the API; a PDF completes with page numbers on its sources; an unreadable document
ends FAILED `document_unreadable` after one pod (no retry), mirrored into the row."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from guideline_core import resource as gj
from pypdf import PdfReader, PdfWriter
from support.cluster import wait_for
from support.documents import guideline, pdftotext, words

pytestmark = pytest.mark.cluster

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
    stack = make_stack()
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
    stack = make_stack()
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

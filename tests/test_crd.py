"""The GuidelineJob CRD as the real API server enforces it: established, explained, and
validating guidelineText and spec immutability with messages naming the field."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from guideline_core import resource as gj
from support.cluster import LocalCluster

pytestmark = pytest.mark.cluster

CRD_FILE = Path(__file__).resolve().parents[1] / "crds" / "guidelinejobs.ingest.guidelines.dev.yaml"


def manifest(spec: Any, name: str = "") -> dict[str, Any]:
    meta = {"name": name} if name else {"generateName": gj.GENERATE_NAME}
    return {"apiVersion": gj.API_VERSION, "kind": gj.KIND, "metadata": meta, "spec": spec}


def create(cluster: LocalCluster, namespace: str, body: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(body), check=False
    )


def test_crd_is_established_with_its_names(cluster: LocalCluster) -> None:
    crd = cluster.get_json("crd", f"{gj.PLURAL}.{gj.GROUP}")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    names = crd["status"]["acceptedNames"]
    assert (names["kind"], names["plural"], names["singular"]) == (gj.KIND, gj.PLURAL, gj.SINGULAR)
    assert gj.SHORT_NAME in names["shortNames"]
    assert cluster.kubectl("get", gj.SHORT_NAME, "-A").returncode == 0


def test_explain_prints_the_field_description(cluster: LocalCluster) -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    description = schema["properties"]["spec"]["properties"]["guidelineText"]["description"]
    out = cluster.kubectl("explain", f"{gj.SHORT_NAME}.spec.guidelineText").stdout
    assert "FIELD: guidelineText <string>" in out
    assert " ".join(description.split()[:8]) in " ".join(out.split())
    spec_out = cluster.kubectl("explain", f"{gj.SHORT_NAME}.spec").stdout
    assert "guidelineText\t<string>" in spec_out
    for field in ("guidelineTextFrom", "documentRef"):
        assert f"{field}\t<Object>" in spec_out
    for field in ("supersedes", "review.minCoverage"):
        out = cluster.kubectl("explain", f"{gj.SHORT_NAME}.spec.{field}").stdout
        assert f"FIELD: {field.rsplit('.', 1)[-1]}" in out
    source = cluster.kubectl("explain", f"{gj.SHORT_NAME}.status.result.checklist.source").stdout
    assert "guidelineText[start:end] == quote" in " ".join(source.split())


def test_maximum_size_guideline_is_accepted(cluster: LocalCluster, namespace: str) -> None:
    text = ("Wash hands before every patient contact. " * 2_500)[: gj.MAX_GUIDELINE_CHARS]
    assert len(text) == gj.MAX_GUIDELINE_CHARS
    result = create(cluster, namespace, manifest({"guidelineText": text}))
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    stored = cluster.get_json(gj.PLURAL, created["metadata"]["name"], "-n", namespace)
    assert stored["spec"]["guidelineText"] == text


def test_maximum_size_counts_characters_not_bytes(cluster: LocalCluster, namespace: str) -> None:
    text = "é" * gj.MAX_GUIDELINE_CHARS  # 200,000 bytes of UTF-8
    result = create(cluster, namespace, manifest({"guidelineText": text}))
    assert result.returncode == 0, result.stderr


ONE_INPUT = (
    "exactly one of spec.guidelineText, spec.guidelineTextFrom and spec.documentRef must be set"
)
SHA = "0" * 64
DOC_ID = "0b8e3f4c-7d7a-4c55-9d1e-2f4a0c6b9e11"
DOCUMENT_REF = {"id": DOC_ID, "sha256": SHA, "mediaType": "application/pdf", "bytes": 1234}
CONFIG_MAP_REF = {"configMapKeyRef": {"name": "guidelines", "key": "valvular.pdf"}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, ONE_INPUT, id="missing"),
        pytest.param(
            {"guidelineText": ""}, "spec.guidelineText in body should be at least 1", id="empty"
        ),
        pytest.param(
            {"guidelineText": " \n\t  "}, "spec.guidelineText in body should match", id="blank"
        ),
        pytest.param(
            {"guidelineText": "x" * (gj.MAX_GUIDELINE_CHARS + 1)},
            "spec.guidelineText: Too long",
            id="oversize",
        ),
        pytest.param(
            {"guidelineText": 42}, "spec.guidelineText in body must be of type string", id="int"
        ),
        pytest.param(
            {"guidelineText": ["a"]}, "spec.guidelineText in body must be of type string", id="list"
        ),
        pytest.param({"guidelineText": None}, ONE_INPUT, id="null"),
        pytest.param(
            {"guidelineText": "ok", "documentRef": DOCUMENT_REF},
            ONE_INPUT,
            id="text-and-reference",
        ),
        pytest.param(
            {"documentRef": {**DOCUMENT_REF, "sha256": "ABC"}},
            "spec.documentRef.sha256 in body should match",
            id="reference-sha256-not-hex",
        ),
        pytest.param(
            {"documentRef": {k: v for k, v in DOCUMENT_REF.items() if k != "id"}},
            "spec.documentRef.id: Required value",
            id="reference-without-id",
        ),
        pytest.param(
            {"guidelineText": "ok", "supersedes": "job-1"},
            "spec.supersedes in body should match",
            id="supersedes-not-a-uuid",
        ),
        pytest.param(
            {"guidelineText": "ok", "review": {"minCoverage": 1.5}},
            "spec.review.minCoverage in body should be less than or equal to 1",
            id="coverage-above-1",
        ),
        pytest.param(
            {"guidelineTextFrom": CONFIG_MAP_REF, "documentRef": DOCUMENT_REF},
            ONE_INPUT,
            id="from-and-ref",
        ),
        pytest.param(
            {
                "guidelineTextFrom": {
                    **CONFIG_MAP_REF,
                    "secretKeyRef": {"name": "s", "key": "k"},
                }
            },
            "exactly one of spec.guidelineTextFrom.configMapKeyRef and "
            "spec.guidelineTextFrom.secretKeyRef must be set",
            id="configmap-and-secret",
        ),
        pytest.param(
            {"guidelineTextFrom": {}},
            "exactly one of spec.guidelineTextFrom.configMapKeyRef",
            id="from-empty",
        ),
        pytest.param(
            {"guidelineTextFrom": {"configMapKeyRef": {"name": "guidelines"}}},
            "spec.guidelineTextFrom.configMapKeyRef.key: Required value",
            id="from-without-key",
        ),
        pytest.param(
            {"guidelineTextFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}},
            "spec.guidelineTextFrom.secretKeyRef.key in body should match",
            id="key-with-slash",
        ),
    ],
)
def test_invalid_guideline_text_is_rejected(
    cluster: LocalCluster, namespace: str, spec: dict[str, Any], expected: str
) -> None:
    result = create(cluster, namespace, manifest(spec))
    assert result.returncode != 0
    assert "is invalid" in result.stderr
    assert expected in result.stderr


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"guidelineTextFrom": CONFIG_MAP_REF}, id="configmap"),
        pytest.param(
            {"guidelineTextFrom": {"secretKeyRef": {"name": "s", "key": "a.txt"}}}, id="secret"
        ),
        pytest.param({"documentRef": DOCUMENT_REF, "title": "Valvular"}, id="document-ref"),
    ],
)
def test_other_inputs_are_accepted(
    cluster: LocalCluster, namespace: str, spec: dict[str, Any]
) -> None:
    result = create(cluster, namespace, manifest(spec))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"] == spec


def test_spec_without_object_is_rejected(cluster: LocalCluster, namespace: str) -> None:
    body = manifest({"guidelineText": "ok"})
    del body["spec"]
    result = create(cluster, namespace, body)
    assert result.returncode != 0 and "spec: Required value" in result.stderr


def test_spec_is_immutable(cluster: LocalCluster, namespace: str) -> None:
    result = create(cluster, namespace, manifest({"guidelineText": "First version."}, name="imm"))
    assert result.returncode == 0, result.stderr
    for patch in (
        {"spec": {"guidelineText": "Second version."}},
        {"spec": {"model": "another-model"}},
    ):
        changed = cluster.kubectl(
            "patch",
            gj.PLURAL,
            "imm",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps(patch),
            check=False,
        )
        assert changed.returncode != 0
        assert "spec: Invalid value" in changed.stderr
        assert "immutable" in changed.stderr
    stored = cluster.get_json(gj.PLURAL, "imm", "-n", namespace)
    assert stored["spec"] == {"guidelineText": "First version."}
    # Metadata stays mutable: that is how cancel and retry requests reach the operator.
    cluster.kubectl("annotate", gj.PLURAL, "imm", "-n", namespace, "example.com/note=kept")


def test_status_is_a_subresource(cluster: LocalCluster, namespace: str) -> None:
    result = create(cluster, namespace, manifest({"guidelineText": "Status test."}, name="st"))
    assert result.returncode == 0, result.stderr
    # Status written through the main resource is ignored; through /status it sticks.
    cluster.kubectl(
        "patch",
        gj.PLURAL,
        "st",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "COMPLETED"}}),
    )
    assert "status" not in cluster.get_json(gj.PLURAL, "st", "-n", namespace)
    cluster.kubectl(
        "patch",
        gj.PLURAL,
        "st",
        "-n",
        namespace,
        "--type=merge",
        "--subresource=status",
        "-p",
        json.dumps({"status": {"phase": "PROCESSING", "attempts": 1}}),
    )
    stored = cluster.get_json(gj.PLURAL, "st", "-n", namespace)
    assert stored["status"] == {"phase": "PROCESSING", "attempts": 1}
    bad = cluster.kubectl(
        "patch",
        gj.PLURAL,
        "st",
        "-n",
        namespace,
        "--type=merge",
        "--subresource=status",
        "-p",
        json.dumps({"status": {"phase": "DONE"}}),
        check=False,
    )
    assert bad.returncode != 0 and "status.phase: Unsupported value" in bad.stderr


def test_status_keeps_page_cited_sources_and_the_document(
    cluster: LocalCluster, namespace: str
) -> None:
    """The status schema knows the fields of a result from a document: nothing is pruned."""
    result = create(cluster, namespace, manifest({"documentRef": DOCUMENT_REF}, name="doc"))
    assert result.returncode == 0, result.stderr
    source = {
        "quote": "Verifiers SHALL require",
        "start": 10,
        "end": 33,
        "match": "exact",
        "page": 4,
        "page_end": 5,
        "page_label": "iv",
        "section": ["5 Authenticators", "5.1 Memorized secrets"],
    }
    document = {
        "media_type": "application/pdf",
        "bytes": 1234,
        "sha256": SHA,
        "pages": 80,
        "characters": 250_000,
        "extractor": "pypdfium2",
        "extractor_version": "4.30.0",
        "warnings": [{"kind": "mojibake", "count": 2, "first_offset": 17}],
    }
    status = {
        "phase": "COMPLETED",
        "result": {
            "summary": "s",
            "checklist": [{"item": "i", "source": source}],
            "document": document,
        },
    }
    cluster.kubectl(
        "patch",
        gj.PLURAL,
        "doc",
        "-n",
        namespace,
        "--type=merge",
        "--subresource=status",
        "-p",
        json.dumps({"status": status}),
    )
    stored = cluster.get_json(gj.PLURAL, "doc", "-n", namespace)["status"]["result"]
    assert stored["checklist"][0]["source"] == source
    assert stored["document"] == document


def test_the_apis_manifest_with_a_document_ref_is_small_and_accepted(
    cluster: LocalCluster, namespace: str
) -> None:
    ref = gj.DocumentRef(id=DOC_ID, sha256=SHA, media_type="application/pdf", bytes=26_214_400)
    body = gj.guideline_job_manifest(
        event_id=uuid.uuid4(), document_ref=ref, title="Valvular heart disease", tenant="t"
    )
    assert body["spec"]["documentRef"] == {**DOCUMENT_REF, "bytes": 26_214_400}
    assert "guidelineText" not in body["spec"]
    result = create(cluster, namespace, body)
    assert result.returncode == 0, result.stderr
    # Whatever the document's size, the object is small (etcd holds no document).
    assert len(result.stdout.encode()) < 4096
    with pytest.raises(ValueError, match="exactly one"):
        gj.guideline_job_manifest(event_id=uuid.uuid4(), guideline_text="x", document_ref=ref)
    with pytest.raises(ValueError, match="exactly one"):
        gj.guideline_job_manifest(event_id=uuid.uuid4())

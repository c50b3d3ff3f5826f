"""FHIR R4 (4.0.1): a `Bundle` (type collection) of a `PlanDefinition` (one action per
checklist item, in the style of a CPG recommendation), a `Questionnaire` (one boolean item
per checklist item, the same order, linkId = the action's id) and a `DocumentReference` for
the guideline with its sha256.

R4, not R4B: the HL7 Clinical Practice Guidelines IG (CPG 2.0.0) is built on FHIR 4.0.1, and
so are the systems that load CPG content. The PlanDefinition claims the CPG shareable
profile (url, version, name, status, experimental, publisher, description, knowledge
capability `shareable`) at knowledge level `semi-structured` (L2), which is what this
service produces; not the CPG recommendation profile, which derives from the computable one
(CQL logic this export does not have). docs/exports.md has the field mapping.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from typing import Any

from guideline_api.exports.provenance import ExportDoc, Item

BASE = "https://guideline-ingest.dev/fhir"
SD = f"{BASE}/StructureDefinition/"
EXT_PROVENANCE = SD + "export-provenance"
EXT_SOURCE = SD + "checklist-source"
EXT_GRADE = SD + "recommendation-grade"
EXT_STRENGTH = SD + "recommendation-wording"
EXT_PRIORITY = SD + "checklist-priority"
EXT_GROUNDED = SD + "checklist-grounded"
EXT_CHANGE = SD + "checklist-change"
SID_EVENT_ID = f"{BASE}/sid/event-id"
SID_SHA256 = f"{BASE}/sid/sha256"

CPG = "http://hl7.org/fhir/uv/cpg/StructureDefinition/"
CPG_SHAREABLE_PLAN = CPG + "cpg-shareableplandefinition"
CPG_CAPABILITY = CPG + "cpg-knowledgeCapability"
CPG_LEVEL = CPG + "cpg-knowledgeRepresentationLevel"
CQF_STRENGTH = "http://hl7.org/fhir/StructureDefinition/cqf-strengthOfRecommendation"
STRENGTH_SYSTEM = "http://terminology.hl7.org/CodeSystem/recommendation-strength"
QUALITY_EXT = "http://hl7.org/fhir/StructureDefinition/cqf-qualityOfEvidence"
QUALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/evidence-quality"
PLAN_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
MEDIA_TYPE = "application/fhir+json"
BOOLEANS = frozenset({"needs_review", "degraded"})

_UUID_NS = uuid.UUID("5d1f4f0e-2c4b-5f7e-9a7e-6b1c2d3e4f50")
# A grade that names a GRADE strength or quality of evidence (verbatim text stays as it is).
_STRONG = re.compile(r"\bstrong\b", re.IGNORECASE)
_WEAK = re.compile(r"\b(weak|conditional)\b", re.IGNORECASE)
_QUALITY = (
    ("very-low", re.compile(r"\bvery[ -]low\b", re.IGNORECASE)),
    ("high", re.compile(r"\bhigh\b", re.IGNORECASE)),
    ("moderate", re.compile(r"\bmoderate\b", re.IGNORECASE)),
    ("low", re.compile(r"\blow\b", re.IGNORECASE)),
)


def _urn(doc: ExportDoc, kind: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_UUID_NS, f'{doc.provenance.event_id}/{kind}')}"


def _computable_name(title: str) -> str:
    """A name matching FHIR's `[A-Z]([A-Za-z0-9_]){0,254}`."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Za-z0-9]+", ascii_title)
    name = "".join(w[:1].upper() + w[1:] for w in words)
    if not name or not name[0].isalpha():
        name = "Guideline" + name
    return (name[0].upper() + name[1:])[:255]


def _ext(url: str, key: str, value: Any) -> dict[str, Any]:
    return {"url": url, key: value}


def _provenance_extension(doc: ExportDoc) -> dict[str, Any]:
    parts = []
    for label, value in doc.provenance.pairs():
        if label in BOOLEANS:
            parts.append(_ext(label, "valueBoolean", value == "true"))
        elif value:
            parts.append(_ext(label, "valueString", value))
    return {"url": EXT_PROVENANCE, "extension": parts}


def _strength_codes(item: Item) -> list[dict[str, Any]]:
    """cqf-strengthOfRecommendation / cqf-qualityOfEvidence when the grade names them
    (GRADE's Strong, Weak/Conditional; high ... very low), with the verbatim text."""
    out: list[dict[str, Any]] = []
    grade = item.grade or ""
    strength = "strong" if _STRONG.search(grade) else "weak" if _WEAK.search(grade) else None
    if strength:
        concept = {"coding": [{"system": STRENGTH_SYSTEM, "code": strength}], "text": grade}
        out.append(_ext(CQF_STRENGTH, "valueCodeableConcept", concept))
    for code, pattern in _QUALITY:
        if pattern.search(grade):
            concept = {"coding": [{"system": QUALITY_SYSTEM, "code": code}], "text": grade}
            out.append(_ext(QUALITY_EXT, "valueCodeableConcept", concept))
            break
    return out


def _source_extension(item: Item) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    if item.quote is not None:
        parts.append(_ext("quote", "valueString", item.quote))
    for label, number in (("start", item.start), ("end", item.end)):
        if number is not None:
            parts.append(_ext(label, "valueInteger", number))
    for label, text in (
        ("match", item.match),
        ("page", item.page),
        ("page_label", item.page_label),
        ("section", item.section),
    ):
        if text:
            parts.append(_ext(label, "valueString", text))
    return {"url": EXT_SOURCE, "extension": parts} if parts else None


def _more_sources(item: Item) -> list[dict[str, Any]]:
    """One more `checklist-source` extension (start, end, page) for each further place the
    item's obligation is quoted (its `sources` after the first; the quote is the same)."""
    out = []
    for place in item.sources[1:]:
        parts = [
            _ext(label, "valueInteger", number)
            for label, number in (("start", place.start), ("end", place.end))
            if number is not None
        ]
        if place.page:
            parts.append(_ext("page", "valueString", place.page))
        if parts:
            out.append({"url": EXT_SOURCE, "extension": parts})
    return out


def _grade_extension(item: Item) -> dict[str, Any] | None:
    if not item.grade:
        return None
    parts = [_ext("text", "valueString", item.grade)]
    for label, number in (("start", item.grade_start), ("end", item.grade_end)):
        if number is not None:
            parts.append(_ext(label, "valueInteger", number))
    return {"url": EXT_GRADE, "extension": parts}


def _action(item: Item) -> dict[str, Any]:
    extensions = [
        e
        for e in (
            _source_extension(item),
            _grade_extension(item),
            _ext(EXT_STRENGTH, "valueCode", item.strength) if item.strength else None,
            _ext(EXT_PRIORITY, "valueCode", item.priority) if item.priority else None,
            _ext(EXT_GROUNDED, "valueBoolean", item.grounded),
            _ext(EXT_CHANGE, "valueCode", item.change) if item.change else None,
        )
        if e is not None
    ]
    action: dict[str, Any] = {
        "id": item.key,
        "extension": [*extensions, *_more_sources(item), *_strength_codes(item)],
        "prefix": f"{item.number}.",
        "title": item.text,
    }
    if item.category:
        action["code"] = [{"text": item.category}]
    if item.quote is not None:
        where = f"p. {item.page}" if item.page else "the guideline"
        action["documentation"] = [{"type": "justification", "label": where, "display": item.quote}]
    return action


def _description(doc: ExportDoc) -> str:
    notice = doc.provenance.review_notice
    summary = doc.summary or "Checklist extracted from the guideline."
    return f"**{notice}**\n\n{summary}" if notice else summary


def _document_reference(doc: ExportDoc) -> dict[str, Any]:
    origin = doc.provenance
    return {
        "resourceType": "DocumentReference",
        "id": f"guideline-{origin.event_id}",
        "extension": [_provenance_extension(doc)],
        # R4's attachment.hash is a base64 SHA-1; the document's sha256 is its
        # version-specific identifier instead.
        "masterIdentifier": {"system": SID_SHA256, "value": origin.document_sha256},
        "identifier": [{"system": SID_EVENT_ID, "value": origin.event_id}],
        "status": "current",
        **({"date": origin.created_at} if origin.created_at else {}),
        "description": f"{origin.title} (sha256 from {origin.sha256_source})",
        "content": [{"attachment": {"contentType": "text/plain", "title": origin.title}}],
    }


def _plan_definition(doc: ExportDoc) -> dict[str, Any]:
    origin = doc.provenance
    related: list[dict[str, Any]] = [
        {
            "type": "derived-from",
            "label": "guideline",
            "display": f"{origin.title} (sha256 {origin.document_sha256})",
        }
    ]
    if doc.changes is not None:
        related.append(
            {
                "type": "predecessor",
                "display": f"superseded job {doc.changes.supersedes}",
                "resource": f"{BASE}/PlanDefinition/{doc.changes.supersedes}",
            }
        )
    plan: dict[str, Any] = {
        "resourceType": "PlanDefinition",
        "id": f"plan-{origin.event_id}",
        "meta": {"profile": [CPG_SHAREABLE_PLAN]},
        "extension": [
            _ext(CPG_CAPABILITY, "valueCode", "shareable"),
            _ext(CPG_LEVEL, "valueCode", "semi-structured"),
            _provenance_extension(doc),
        ],
        "url": f"{BASE}/PlanDefinition/{origin.event_id}",
        "identifier": [{"system": SID_EVENT_ID, "value": origin.event_id}],
        "version": origin.event_id,
        "name": _computable_name(origin.title),
        "title": origin.title,
        "type": {"coding": [{"system": PLAN_TYPE_SYSTEM, "code": "clinical-protocol"}]},
        "status": "draft",
        "experimental": False,
        **({"date": origin.completed_at} if origin.completed_at else {}),
        "publisher": "guideline-ingest (machine extraction)",
        "description": _description(doc),
        "usage": origin.review_notice
        or "Machine-extracted checklist; each action cites its source passage.",
        "relatedArtifact": related,
        "action": [_action(item) for item in doc.items],
    }
    return plan


def _questionnaire(doc: ExportDoc) -> dict[str, Any]:
    origin = doc.provenance
    items: list[dict[str, Any]] = []
    if origin.review_notice:
        items.append({"linkId": "review-notice", "text": origin.review_notice, "type": "display"})
    items.extend(
        {"linkId": item.key, "prefix": f"{item.number}.", "text": item.text, "type": "boolean"}
        for item in doc.items
    )
    return {
        "resourceType": "Questionnaire",
        "id": f"checklist-{origin.event_id}",
        "extension": [_provenance_extension(doc)],
        "url": f"{BASE}/Questionnaire/{origin.event_id}",
        "identifier": [{"system": SID_EVENT_ID, "value": origin.event_id}],
        "version": origin.event_id,
        "name": _computable_name(origin.title) + "Checklist",
        "title": origin.title,
        "status": "draft",
        **({"date": origin.completed_at} if origin.completed_at else {}),
        "description": _description(doc),
        "item": items,
    }


def bundle(doc: ExportDoc) -> dict[str, Any]:
    """The Bundle as a JSON object."""
    origin = doc.provenance
    return {
        "resourceType": "Bundle",
        "id": f"export-{origin.event_id}",
        "identifier": {"system": SID_EVENT_ID, "value": origin.event_id},
        "type": "collection",
        "timestamp": origin.generated_at,
        "entry": [
            {"fullUrl": _urn(doc, "plan"), "resource": _plan_definition(doc)},
            {"fullUrl": _urn(doc, "questionnaire"), "resource": _questionnaire(doc)},
            {"fullUrl": _urn(doc, "document"), "resource": _document_reference(doc)},
        ],
    }


def to_fhir(doc: ExportDoc) -> bytes:
    """The FHIR export (JSON, UTF-8)."""
    return json.dumps(bundle(doc), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

"""OSCAL 1.1.3 catalog: the guideline's sections as groups (one group when the items name
no section), each checklist item a control whose `statement` part is the item and whose
`guidance` part is its quote, with props for page, offsets, strength, grade, grounded; the
source document as a back-matter resource carrying its sha256; the job's provenance as
metadata props. docs/exports.md has the field mapping.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from guideline_api.exports.provenance import ExportDoc, Item, change_pairs

OSCAL_VERSION = "1.1.3"
NS = "https://guideline-ingest.dev/ns/oscal"
MEDIA_TYPE = "application/json"
PROFILE = "https://pages.nist.gov/OSCAL/reference/1.1.3/catalog/json-reference/"
_UUID_NS = uuid.UUID("0b6f3c1e-8d1a-5c57-a3e9-2f4d5b6c7d80")
_BLANKS = re.compile(r"\s+")


def _line(text: str) -> str:
    """Text as one line without outer blanks (OSCAL prop values and titles)."""
    return _BLANKS.sub(" ", text).strip()


def _prop(name: str, value: Any) -> dict[str, str] | None:
    text = _line(str(value)) if value is not None else ""
    return {"name": name, "ns": NS, "value": text} if text else None


def _props(*pairs: tuple[str, Any]) -> list[dict[str, str]]:
    return [p for p in (_prop(name, value) for name, value in pairs) if p is not None]


def _uuid(doc: ExportDoc, kind: str) -> str:
    return str(uuid.uuid5(_UUID_NS, f"{doc.provenance.event_id}/{kind}"))


def _control(item: Item, resource: str) -> dict[str, Any]:
    control: dict[str, Any] = {
        "id": item.key,
        "title": _line(item.text) or item.key,
    }
    props = _props(
        ("label", str(item.number)),
        ("strength", item.strength),
        ("grade", item.grade),
        ("grade-start", item.grade_start),
        ("grade-end", item.grade_end),
        ("section", item.section),
        ("page", item.page),
        ("page-label", item.page_label),
        ("source-start", item.start),
        ("source-end", item.end),
        ("source-match", item.match),
        # Every place the obligation is quoted, when more than one ("14-36 (p. 3); 300-322").
        ("source-places", item.places if len(item.sources) > 1 else None),
        ("grounded", "true" if item.grounded else "false"),
        ("priority", item.priority),
        ("category", item.category),
        ("change", item.change),
    )
    control["props"] = props
    control["links"] = [{"href": f"#{resource}", "rel": "reference"}]
    guidance = item.quote if item.quote is not None else "Not grounded: no quote in the guideline."
    control["parts"] = [
        {"id": f"{item.key}_smt", "name": "statement", "prose": item.text or item.key},
        {"id": f"{item.key}_gdn", "name": "guidance", "prose": guidance},
    ]
    return control


def _groups(doc: ExportDoc, resource: str) -> list[dict[str, Any]]:
    groups = []
    for number, section in enumerate(doc.sections, 1):
        controls = [_control(i, resource) for i in doc.items if i.section == section]
        group: dict[str, Any] = {
            "id": f"section-{number}",
            "title": _line(section or "") or "Checklist",
        }
        if controls:
            group["controls"] = controls
        groups.append(group)
    return groups or [{"id": "section-1", "title": "Checklist"}]


def catalog(doc: ExportDoc) -> dict[str, Any]:
    """The catalog as a JSON object (`{"catalog": ...}`)."""
    origin = doc.provenance
    resource = _uuid(doc, "document")
    pairs = [(label.replace("_", "-"), value) for label, value in origin.pairs()]
    changes = [(label.replace("_", "-"), value) for label, value in change_pairs(doc)]
    remarks = doc.summary or "Checklist extracted from the guideline."
    if origin.review_notice:
        remarks = f"**{origin.review_notice}**\n\n{remarks}"
    rlink: dict[str, Any] = {
        "href": f"urn:guideline-ingest:job:{origin.event_id}:document",
        "media-type": "text/plain",
    }
    if origin.document_sha256:
        rlink["hashes"] = [{"algorithm": "SHA-256", "value": origin.document_sha256}]
    return {
        "catalog": {
            "uuid": _uuid(doc, "catalog"),
            "metadata": {
                "title": _line(origin.title),
                "last-modified": origin.completed_at or origin.generated_at,
                "version": origin.event_id,
                "oscal-version": OSCAL_VERSION,
                "props": _props(*pairs, *changes),
                "remarks": remarks,
            },
            "groups": _groups(doc, resource),
            "back-matter": {
                "resources": [
                    {
                        "uuid": resource,
                        "title": _line(origin.title),
                        "description": f"The guideline (sha256 from {origin.sha256_source}).",
                        "props": _props(("document-sha256", origin.document_sha256)),
                        "rlinks": [rlink],
                    }
                ]
            },
        }
    }


def to_oscal(doc: ExportDoc) -> bytes:
    """The OSCAL export (JSON, UTF-8)."""
    return json.dumps(catalog(doc), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

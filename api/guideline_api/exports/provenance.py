"""What every export is made of: the job's provenance and its checklist items, read once
from the job as the API shows it (`GET /v1/jobs/{id}`) into plain values, so each format
only lays them out. Fields that later results may carry (`strength`, `grade`, `page`,
`page_label`, `section`, `result.document`) are read when present and left empty when not.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guideline_core import version

SHA256_FROM_RESULT = "result.document.sha256"
SHA256_COMPUTED = "sha256 of the stored guideline text (UTF-8), computed at export"


@dataclass(frozen=True)
class Place:
    """One place the guideline quotes an item's obligation (one of its `sources`)."""

    start: int | None
    end: int | None
    page: str | None

    @property
    def label(self) -> str:
        """E.g. `120-153 (p. 3)`: the offsets, and the page when known."""
        span = f"{self.start}-{self.end}" if self.start is not None else "?"
        return span + (f" (p. {self.page})" if self.page else "")


@dataclass(frozen=True)
class Item:
    """One checklist item, its fields as text or numbers (None when absent)."""

    number: int  # 1-based, the checklist's order
    text: str
    priority: str | None
    category: str | None
    strength: str | None
    grade: str | None  # verbatim, as the guideline words it
    grade_start: int | None
    grade_end: int | None
    section: str | None  # the heading path, " > " between levels
    page: str | None  # "3", or "3-4" for a quote across a page break
    page_label: str | None
    quote: str | None
    start: int | None
    end: int | None
    match: str | None
    grounded: bool
    change: str | None  # added | changed | unchanged, when the job supersedes another
    # Every place the obligation is quoted (`sources`; the first is the source above).
    sources: tuple[Place, ...] = ()

    @property
    def places(self) -> str:
        """All its sources as one line, `12-40 (p. 1); 300-328 (p. 4)` ("" when none)."""
        return "; ".join(place.label for place in self.sources)

    @property
    def key(self) -> str:
        """The item's id in every format (FHIR action id and linkId, OSCAL control id)."""
        return f"item-{self.number}"

    @property
    def facts(self) -> list[str]:
        """Its strength, grade, priority, category and change, those present, in that order."""
        facts = [
            self.strength,
            f"grade: {self.grade}" if self.grade else None,
            self.priority,
            self.category,
            f"change: {self.change}" if self.change else None,
        ]
        return [fact for fact in facts if fact]


@dataclass(frozen=True)
class Changes:
    """What changed against the superseded job's checklist (`result.changes`)."""

    supersedes: str
    available: bool
    reason: str | None
    added: int
    removed: list[str]  # the removed items' texts
    changed: int
    unchanged: int


@dataclass(frozen=True)
class Provenance:
    """Where an export comes from; every format carries all of it."""

    event_id: str
    title: str
    document_sha256: str
    sha256_source: str
    provider: str | None
    model: str | None
    prompt_version: str | None
    service_version: str  # the result's, else the exporting API's own version
    created_at: str | None
    completed_at: str | None
    needs_review: bool
    review_reasons: tuple[str, ...]
    degraded: bool
    generated_at: str

    def pairs(self) -> list[tuple[str, str]]:
        """(label, value) of every field, in one order for every format."""
        return [
            ("event_id", self.event_id),
            ("title", self.title),
            ("document_sha256", self.document_sha256),
            ("document_sha256_source", self.sha256_source),
            ("provider", self.provider or ""),
            ("model", self.model or ""),
            ("prompt_version", self.prompt_version or ""),
            ("service_version", self.service_version),
            ("created_at", self.created_at or ""),
            ("completed_at", self.completed_at or ""),
            ("needs_review", "true" if self.needs_review else "false"),
            ("review_reasons", "; ".join(self.review_reasons)),
            ("degraded", "true" if self.degraded else "false"),
            ("generated_at", self.generated_at),
        ]

    @property
    def review_notice(self) -> str | None:
        """The sentence a result needing review shows first, in every format."""
        if not self.needs_review:
            return None
        reasons = "; ".join(self.review_reasons) or "below a review threshold"
        return f"NEEDS REVIEW: {reasons}"


@dataclass(frozen=True)
class ExportDoc:
    """A COMPLETED job, ready to be laid out in any format."""

    provenance: Provenance
    summary: str
    items: list[Item]
    changes: Changes | None

    @property
    def sections(self) -> list[str | None]:
        """The distinct sections in checklist order, then None for the items without one."""
        seen: dict[str, None] = {}
        for item in self.items:
            if item.section is not None:
                seen.setdefault(item.section, None)
        loose = any(item.section is None for item in self.items)
        return [*seen, *([None] if loose else [])]


def text_sha256(text: str) -> str:
    """The hex sha256 of a guideline text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        return " > ".join(str(v) for v in value if v not in (None, "")) or None
    return str(value)


def _page(value: Any) -> str | None:
    if isinstance(value, Sequence) and not isinstance(value, str):
        pages = [str(p) for p in value if p not in (None, "")]
        if not pages:
            return None
        return pages[0] if len(set(pages)) == 1 else f"{pages[0]}-{pages[-1]}"
    return _text(value)


def _pages(item: Mapping[str, Any], source: Mapping[str, Any]) -> Any:
    """The page(s) of an item: the runner's `source.page` and, for a quote across a page
    break, `source.page_end` (docs/contracts.md), as [first, last]."""
    page = _field(item, source, "page")
    end = source.get("page_end")
    return [page, end] if end not in (None, "") and page not in (None, "") else page


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _grade(value: Any) -> tuple[str | None, int | None, int | None]:
    """(verbatim grade, start, end): a grade may be a string or {text|quote, start, end}."""
    if isinstance(value, Mapping):
        text = value.get("text") or value.get("quote") or value.get("value")
        return _text(text), _int(value.get("start")), _int(value.get("end"))
    return _text(value), None, None


def _field(item: Mapping[str, Any], source: Mapping[str, Any], name: str) -> Any:
    """An item's field, else its source's (page and section may sit on either)."""
    value = item.get(name)
    return value if value not in (None, "") else source.get(name)


def _identity(item: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes a checklist item the same item in `result.changes`: its wording and its
    source passage."""
    source = item.get("source") or {}
    return (item.get("item"), source.get("quote"), source.get("start"), source.get("end"))


def _change_index(changes: Mapping[str, Any] | None) -> dict[tuple[Any, ...], str] | None:
    """Item identity -> `added` | `changed`, when the changes are available."""
    if not changes or not changes.get("available"):
        return None
    index = {_identity(pair.get("after") or {}): "changed" for pair in changes.get("changed") or []}
    index.update({_identity(added): "added" for added in changes.get("added") or []})
    return index


def _places(data: Mapping[str, Any], source: Mapping[str, Any]) -> tuple[Place, ...]:
    """The item's `sources` (a result written before they existed: its `source`)."""
    raw = data.get("sources")
    listed = [s for s in raw if isinstance(s, Mapping)] if isinstance(raw, list) else []
    return tuple(
        Place(_int(s.get("start")), _int(s.get("end")), _page(_pages({}, s)))
        for s in (listed or ([source] if source else []))
    )


def _item(number: int, raw: Any, changes: dict[tuple[Any, ...], str] | None) -> Item:
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {"item": str(raw)}
    source: Mapping[str, Any] = data.get("source") or {}
    grade, grade_start, grade_end = _grade(data.get("grade"))
    return Item(
        number=number,
        text=str(data.get("item") or ""),
        priority=_text(data.get("priority")),
        category=_text(data.get("category")),
        strength=_text(data.get("strength")),
        grade=grade,
        grade_start=grade_start,
        grade_end=grade_end,
        section=_text(_field(data, source, "section")),
        page=_page(_pages(data, source)),
        page_label=_text(_field(data, source, "page_label")),
        quote=_text(source.get("quote")),
        start=_int(source.get("start")),
        end=_int(source.get("end")),
        match=_text(source.get("match")),
        grounded=bool(data.get("grounded")),
        change=None if changes is None else changes.get(_identity(data), "unchanged"),
        sources=_places(data, source),
    )


def _changes(raw: Mapping[str, Any] | None) -> Changes | None:
    if not raw:
        return None
    return Changes(
        supersedes=str(raw.get("supersedes") or ""),
        available=bool(raw.get("available")),
        reason=_text(raw.get("reason")),
        added=len(raw.get("added") or []),
        removed=[str((r or {}).get("item") or "") for r in raw.get("removed") or []],
        changed=len(raw.get("changed") or []),
        unchanged=int(raw.get("unchanged") or 0),
    )


def build(job: Mapping[str, Any], text_digest: str | None, generated_at: str) -> ExportDoc:
    """The export of a COMPLETED job as `GET /v1/jobs/{id}` shows it (JSON values).
    `text_digest` is the sha256 of its stored text, used when the result names no
    document sha256."""
    result: Mapping[str, Any] = job.get("result") or {}
    document: Mapping[str, Any] = result.get("document") or {}
    if document.get("sha256"):
        sha256, sha_source = str(document["sha256"]), SHA256_FROM_RESULT
    else:
        sha256, sha_source = text_digest or "", SHA256_COMPUTED
    review: Mapping[str, Any] = result.get("review") or {}
    changes = result.get("changes")
    provenance = Provenance(
        event_id=str(job["event_id"]),
        title=str(job.get("title") or f"Guideline {job['event_id']}"),
        document_sha256=sha256,
        sha256_source=sha_source,
        provider=_text(job.get("provider") or result.get("provider")),
        model=_text(job.get("model") or result.get("model")),
        prompt_version=_text(result.get("prompt_version")),
        service_version=_text(result.get("service_version")) or version(),
        created_at=_text(job.get("created_at")),
        completed_at=_text(job.get("completed_at")),
        needs_review=bool(result.get("needs_review")),
        review_reasons=tuple(str(r) for r in review.get("reasons") or []),
        degraded=bool(result.get("degraded")),
        generated_at=generated_at,
    )
    index = _change_index(changes)
    items = [_item(n, raw, index) for n, raw in enumerate(result.get("checklist") or [], 1)]
    return ExportDoc(
        provenance=provenance,
        summary=str(result.get("summary") or ""),
        items=items,
        changes=_changes(changes),
    )


def change_pairs(doc: ExportDoc) -> list[tuple[str, str]]:
    """(label, value) of the job's changes against the one it supersedes."""
    changes = doc.changes
    if changes is None:
        return []
    pairs = [("supersedes", changes.supersedes)]
    if not changes.available:
        return [*pairs, ("changes_available", "false"), ("changes_reason", changes.reason or "")]
    return [
        *pairs,
        ("items_added", str(changes.added)),
        ("items_changed", str(changes.changed)),
        ("items_unchanged", str(changes.unchanged)),
        ("items_removed", str(len(changes.removed))),
        *((f"removed_{n}", text) for n, text in enumerate(changes.removed, 1)),
    ]


def slug(title: str, limit: int = 60) -> str:
    """An ASCII file-name stem of a title: lower case, words joined by '-'."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^A-Za-z0-9]+", "-", ascii_title).strip("-").lower()
    return words[:limit].rstrip("-") or "guideline"


def unicode_slug(title: str, limit: int = 60) -> str:
    """A file-name stem keeping the title's letters in any script (for `filename*`)."""
    words = re.sub(r"[\W_]+", "-", unicodedata.normalize("NFC", title)).strip("-").lower()
    return words[:limit].rstrip("-") or "guideline"

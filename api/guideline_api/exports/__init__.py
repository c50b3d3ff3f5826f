"""Exports of a COMPLETED job's result in the formats guideline and compliance systems
read: FHIR R4, OSCAL, CSV, XLSX, Markdown and printable HTML. Each is a pure function of
the job as the API shows it (`provenance.build`), so the same result gives the same bytes
apart from the generation time; nothing calls an LLM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from guideline_api.exports import fhir, html, markdown, oscal, tabular
from guideline_api.exports.provenance import ExportDoc, slug, unicode_slug

OSCAL_PROFILE = "http://csrc.nist.gov/ns/oscal/1.0"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Format:
    """One export format: its `?format=` name, media type, file extension and renderer."""

    name: str
    media_type: str  # what is matched against Accept
    extension: str
    render: Callable[[ExportDoc], bytes]
    content_type: str  # what the response says (with its parameters)
    text: bool  # printable to a terminal


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("fhir", fhir.MEDIA_TYPE, "fhir.json", fhir.to_fhir, fhir.MEDIA_TYPE, True),
        Format(
            "oscal",
            oscal.MEDIA_TYPE,
            "oscal.json",
            oscal.to_oscal,
            f'{oscal.MEDIA_TYPE}; profile="{OSCAL_PROFILE}"',
            True,
        ),
        Format("csv", "text/csv", "csv", tabular.to_csv, "text/csv; charset=utf-8", True),
        Format("xlsx", XLSX_MEDIA_TYPE, "xlsx", tabular.to_xlsx, XLSX_MEDIA_TYPE, False),
        Format(
            "md",
            markdown.MEDIA_TYPE,
            "md",
            markdown.to_markdown,
            "text/markdown; charset=utf-8",
            True,
        ),
        Format("html", html.MEDIA_TYPE, "html", html.to_html, "text/html; charset=utf-8", True),
    )
}


def _media_ranges(accept: str) -> list[tuple[float, int, str, dict[str, str]]]:
    """(q, position, type, parameters) of each media range of an Accept header."""
    ranges = []
    for position, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        ranges.append((q, position, pieces[0].lower(), params))
    return ranges


def _matches(media_type: str, params: dict[str, str]) -> Format | None:
    """The format a specific media range names (application/json needs OSCAL's profile)."""
    if media_type == "application/json":
        return FORMATS["oscal"] if "oscal" in params.get("profile", "").lower() else None
    for candidate in FORMATS.values():
        if candidate.media_type == media_type:
            return candidate
    return None


def from_accept(accept: str) -> Format | None:
    """The format an Accept header prefers (highest q, then first listed); None when it
    names none of them (wildcards name none: a format must be chosen)."""
    ranked = sorted(_media_ranges(accept), key=lambda r: (-r[0], r[1]))
    for q, _, media_type, params in ranked:
        found = _matches(media_type, params) if q > 0 else None
        if found is not None:
            return found
    return None


def only_wildcards(accept: str | None) -> bool:
    """Whether an Accept header is absent or names no specific media type."""
    return all(r[2] in ("*/*", "") for r in _media_ranges(accept or ""))


def content_disposition(title: str, event_id: str, extension: str) -> str:
    """`attachment` with an ASCII file name and, for any title, its UTF-8 form (RFC 6266,
    RFC 8187): `<slug of the title>-<first 8 characters of the event_id>.<extension>`."""
    tail = f"-{event_id[:8]}.{extension}"
    ascii_name = slug(title) + tail
    utf8_name = unicode_slug(title) + tail
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(utf8_name, safe='')}"

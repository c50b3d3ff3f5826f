"""Printable HTML: one self-contained page (no script, no network) with the provenance,
the summary and the checklist as boxes to tick on paper, each item with its quote and
page. The client's review page (`guideline_client.review`, the guideline with sources
highlighted beside the checklist) is for screens and needs the guideline text; this sheet is
for a clipboard."""

from __future__ import annotations

from html import escape
from typing import Final

from guideline_api.exports.provenance import ExportDoc, Item, change_pairs

MEDIA_TYPE = "text/html"
UNGROUNDED: Final = "not grounded: its quote is not in the guideline"
_CSS: Final = """
body { font: 12pt/1.4 serif; margin: 2cm; color: #000; }
h1 { font-size: 18pt; margin: 0 0 6pt; }
.review { border: 2px solid #a00; color: #a00; font-weight: bold; padding: 6pt; }
table.provenance { border-collapse: collapse; font: 9pt/1.3 sans-serif; margin: 6pt 0 12pt; }
table.provenance td, table.provenance th { border: 1px solid #999; padding: 2pt 4pt;
  text-align: left; vertical-align: top; }
ul.checklist { list-style: none; padding-left: 0; }
ul.checklist li { margin-bottom: 10pt; page-break-inside: avoid; }
.box { display: inline-block; width: 11pt; height: 11pt; border: 1.5px solid #000;
  margin-right: 6pt; vertical-align: -1pt; }
.facts { font-size: 9pt; color: #333; }
blockquote { margin: 3pt 0 0 20pt; font-style: italic; white-space: pre-wrap; }
.ungrounded { color: #a00; }
@media print { body { margin: 0; } }
"""


def _item(item: Item) -> str:
    shown = " · ".join(item.facts)
    head = (
        f'<li id="{item.key}"><span class="box" role="checkbox" aria-checked="false"></span>'
        f"<strong>{escape(item.text)}</strong>"
        + (f' <span class="facts">({escape(shown)})</span>' if shown else "")
    )
    if item.quote is None:
        return head + f'<blockquote class="ungrounded">{UNGROUNDED}</blockquote></li>'
    where = " · ".join(w for w in (f"p. {item.page}" if item.page else None, item.section) if w)
    cite = f' <span class="facts">— {escape(where)}</span>' if where else ""
    if len(item.sources) > 1:  # the same obligation quoted in several places: every one
        cite += (
            f' <span class="facts sources">— quoted {len(item.sources)} times: '
            f"{escape(item.places)}</span>"
        )
    return head + f"<blockquote>“{escape(item.quote)}”{cite}</blockquote></li>"


def to_html(doc: ExportDoc) -> bytes:
    """The printable HTML export (UTF-8)."""
    origin = doc.provenance
    title = escape(origin.title)
    notice = (
        f'<p class="review">⚠ {escape(origin.review_notice)}</p>' if origin.review_notice else ""
    )
    rows = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>"
        for label, value in [*origin.pairs(), *change_pairs(doc)]
        if value
    )
    sections = doc.sections
    body = []
    for section in sections:
        if len(sections) > 1 or section is not None:
            body.append(f"<h3>{escape(section or 'Other items')}</h3>")
        items = "".join(_item(i) for i in doc.items if i.section == section)
        body.append(f'<ul class="checklist">{items}</ul>')
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"<h1>{title}</h1>{notice}"
        f'<table class="provenance">{rows}</table>'
        f"<h2>Summary</h2><p>{escape(doc.summary)}</p>"
        f"<h2>Checklist</h2>{''.join(body)}"
        "</body></html>"
    )
    return page.encode("utf-8")

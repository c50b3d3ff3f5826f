"""CSV and XLSX: one row per checklist item, for audit spreadsheets.

CSV is RFC 4180 (CRLF, fields quoted when needed) in UTF-8 with a BOM (spreadsheet apps
then read it as UTF-8), exactly a header row and one row per item; each row repeats the
job's provenance in its last columns, so a row keeps its origin when filtered or merged.
A text cell a spreadsheet would run as a formula (starting with = + - @, tab or CR) is
prefixed with `'`. XLSX has the items on sheet 1 and the provenance on sheet 2; its cells
keep the text verbatim and are typed as strings, so none becomes a formula (written by
XlsxWriter: twice as fast as openpyxl for a 500-item result, docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import xlsxwriter

from guideline_api.exports.provenance import ExportDoc, Item, change_pairs

ITEM_COLUMNS = (
    "item",
    "strength",
    "grade",
    "section",
    "page",
    "quote",
    "start",
    "end",
    "sources",
    "grounded",
    "category",
    "priority",
)
CHANGE_COLUMN = "change"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ITEMS_SHEET, PROVENANCE_SHEET = "Checklist", "Provenance"


def _values(item: Item) -> list[Any]:
    return [
        item.text,
        item.strength,
        item.grade,
        item.section,
        item.page,
        item.quote,
        item.start,
        item.end,
        item.places,
        item.grounded,
        item.category,
        item.priority,
    ]


def header(doc: ExportDoc) -> list[str]:
    """The column names: the item's fields, `change` when the job supersedes another,
    then the provenance (without the generation time, so a CSV is the same every time)."""
    change = [CHANGE_COLUMN] if doc.changes is not None else []
    origin = [label for label, _ in doc.provenance.pairs() if label != "generated_at"]
    return [*ITEM_COLUMNS, *change, *origin]


def rows(doc: ExportDoc) -> list[list[Any]]:
    """One list of values per item, in header order."""
    origin = [value for label, value in doc.provenance.pairs() if label != "generated_at"]
    change = doc.changes is not None
    return [
        [*_values(item), *([item.change or ""] if change else []), *origin] for item in doc.items
    ]


def defuse(value: Any) -> str:
    """A CSV cell: text that a spreadsheet would run as a formula gets a leading `'`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def to_csv(doc: ExportDoc) -> bytes:
    """The CSV export."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header(doc))
    writer.writerows([defuse(v) for v in row] for row in rows(doc))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(doc: ExportDoc) -> bytes:
    """The XLSX export: sheet 1 the items, sheet 2 the provenance (and changes). XlsxWriter
    writes every member with one fixed date and the workbook's `created` is the generation
    time, so the same result gives the same bytes."""
    generated = datetime.fromisoformat(doc.provenance.generated_at.replace("Z", "+00:00"))
    out = io.BytesIO()
    workbook = xlsxwriter.Workbook(
        out,
        {
            "in_memory": True,
            # Text stays text: "=..." is no formula, "1e3" no number, "http://..." no link.
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
        },
    )
    workbook.set_properties(
        {"title": doc.provenance.title, "created": generated.replace(tzinfo=None)}
    )
    bold = workbook.add_format({"bold": True})
    items = workbook.add_worksheet(ITEMS_SHEET)
    items.freeze_panes(1, 0)
    width = len(ITEM_COLUMNS) + (doc.changes is not None)  # provenance: on sheet 2
    items.write_row(0, 0, header(doc)[:width], bold)
    for number, row in enumerate(rows(doc), 1):
        items.write_row(number, 0, row[:width])
    origin = workbook.add_worksheet(PROVENANCE_SHEET)
    origin.write_row(0, 0, ["field", "value"], bold)
    notice = doc.provenance.review_notice
    pairs = [*([("review", notice)] if notice else []), *doc.provenance.pairs()]
    for number, pair in enumerate([*pairs, *change_pairs(doc)], 1):
        origin.write_row(number, 0, pair)
    workbook.close()
    return out.getvalue()

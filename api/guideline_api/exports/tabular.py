"""CSV and XLSX: one row per checklist item, for audit spreadsheets.

CSV is RFC 4180 (CRLF, fields quoted when needed) in UTF-8 with a BOM (spreadsheet apps
then read it as UTF-8), exactly a header row and one row per item; each row repeats the
job's provenance in its last columns, so a row keeps its origin when filtered or merged.
A text cell a spreadsheet would run as a formula (starting with = + - @, tab or CR) is
prefixed with `'`. XLSX has the items on sheet 1 and the provenance on sheet 2; its cells
keep the text verbatim and are typed as strings, so none becomes a formula.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.writer.excel import ExcelWriter

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
    "grounded",
    "category",
    "priority",
)
CHANGE_COLUMN = "change"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ITEMS_SHEET, PROVENANCE_SHEET = "Checklist", "Provenance"
BOLD = Font(bold=True)


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


class _FixedTimeZip(zipfile.ZipFile):
    """A zip whose entries all carry one time (the export's), not the moment of writing,
    so the same workbook gives the same bytes."""

    fixed: tuple[int, int, int, int, int, int] = (1980, 1, 1, 0, 0, 0)

    def writestr(self, zinfo_or_arcname: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(zinfo_or_arcname, str):
            zinfo_or_arcname = zipfile.ZipInfo(zinfo_or_arcname, self.fixed)
            zinfo_or_arcname.compress_type = zipfile.ZIP_DEFLATED
        super().writestr(zinfo_or_arcname, data, *args, **kwargs)

    def write(self, filename: Any, arcname: Any = None, *args: Any, **kwargs: Any) -> None:
        with open(filename, "rb") as f:
            self.writestr(arcname or str(filename), f.read())


def _cells(sheet: Any, values: list[Any], bold: bool = False) -> list[Any]:
    """A row for a write-only sheet: text that openpyxl would make a formula or an error
    value ("=...", "#N/A") is typed as a string."""
    row: list[Any] = []
    for value in values:
        if bold or (isinstance(value, str) and value.startswith(("=", "#"))):
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"
            if bold:
                cell.font = BOLD
            row.append(cell)
        else:
            row.append(value)
    return row


def to_xlsx(doc: ExportDoc) -> bytes:
    """The XLSX export: sheet 1 the items, sheet 2 the provenance (and changes)."""
    generated = datetime.fromisoformat(doc.provenance.generated_at.replace("Z", "+00:00"))
    workbook = Workbook(write_only=True)
    items = workbook.create_sheet(ITEMS_SHEET)
    items.freeze_panes = "A2"
    width = len(ITEM_COLUMNS) + (doc.changes is not None)  # provenance: on sheet 2
    items.append(_cells(items, header(doc)[:width], bold=True))
    for row in rows(doc):
        items.append(_cells(items, row[:width]))
    origin = workbook.create_sheet(PROVENANCE_SHEET)
    origin.append(_cells(origin, ["field", "value"], bold=True))
    notice = doc.provenance.review_notice
    pairs = [*([("review", notice)] if notice else []), *doc.provenance.pairs()]
    for label, value in [*pairs, *change_pairs(doc)]:
        origin.append(_cells(origin, [label, value]))
    naive = generated.replace(tzinfo=None)
    workbook.properties.created = workbook.properties.modified = naive
    workbook.properties.title = doc.provenance.title
    out = io.BytesIO()
    archive = _FixedTimeZip(out, "w", zipfile.ZIP_DEFLATED)
    archive.fixed = (max(naive.year, 1980), naive.month, naive.day, naive.hour, naive.minute, 0)
    ExcelWriter(workbook, archive).save()
    return out.getvalue()

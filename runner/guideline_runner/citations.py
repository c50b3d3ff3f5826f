"""Page and section citations: each grounded item's source and every one of its sources (a
range of the extracted text) gets the page(s), printed page label and heading path of the
document it came from."""

from __future__ import annotations

from guideline_runner import documents
from guideline_runner.models import ChainResult, ChecklistItem, DocumentInfo, Source


def _cite(source: Source, document: documents.ExtractedDocument) -> Source:
    where = documents.cite(document, source.start, source.end)
    fields: dict[str, object] = {}
    if where.pages:
        fields["page"] = where.pages[0]
        if where.pages[-1] != where.pages[0]:
            fields["page_end"] = where.pages[-1]
        if where.page_labels[0] is not None:
            fields["page_label"] = where.page_labels[0]
    # The section the quote starts in (a heading path is empty before the first heading).
    if where.sections and where.sections[0]:
        fields["section"] = list(where.sections[0])
    return source.model_copy(update=fields)


def _cited(item: ChecklistItem, document: documents.ExtractedDocument) -> ChecklistItem:
    """The item with its `source` and every one of its `sources` cited."""
    if item.source is None:
        return item
    return item.model_copy(
        update={
            "source": _cite(item.source, document),
            "sources": [_cite(s, document) for s in item.sources],
        }
    )


def with_citations(
    result: ChainResult, document: documents.ExtractedDocument | None, info: DocumentInfo | None
) -> ChainResult:
    """`result` with every source cited in `document` and `result.document` set (unchanged
    for an inline text)."""
    if document is None:
        return result
    checklist = [_cited(item, document) for item in result.checklist]
    return result.model_copy(update={"checklist": checklist, "document": info})

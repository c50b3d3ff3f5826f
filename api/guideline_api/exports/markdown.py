"""Markdown: the provenance, the summary and the checklist as `- [ ]` task-list items, each
with its quote (and page) as a block quote. Text from the result is escaped, so a quote
cannot open a link, an HTML tag, a heading or a list."""

from __future__ import annotations

import re

from guideline_api.exports.provenance import ExportDoc, Item, change_pairs

MEDIA_TYPE = "text/markdown"
# Inline Markdown and HTML syntax (CommonMark lets any ASCII punctuation be escaped).
_INLINE = re.compile(r"([\\`*_{}\[\]()<>!|~&])")
# What makes a line a heading, list item, block quote or thematic break.
_BLOCK_START = re.compile(r"^(\s*\d*)([-+#=>.)])")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def escape(text: str) -> str:
    """`text` as literal Markdown on one line."""
    return _INLINE.sub(r"\\\1", _NEWLINES.sub(" ", text))


def _quote_lines(text: str) -> list[str]:
    """A quote as block-quote lines (its own line breaks kept)."""
    return [
        "  > " + _BLOCK_START.sub(r"\1\\\2", escape(line), count=1) if line.strip() else "  >"
        for line in _NEWLINES.split(text)
    ]


def _facts(item: Item) -> str:
    return " · ".join(escape(fact) for fact in item.facts)


def _item_lines(item: Item) -> list[str]:
    facts = _facts(item)
    lines = [f"- [ ] **{escape(item.text)}**" + (f" ({facts})" if facts else "")]
    if item.quote is None:
        lines.append("  > *not grounded: its quote is not in the guideline*")
        return lines
    lines.extend(_quote_lines(item.quote))
    where = [f"p. {item.page}" if item.page else None, item.section]
    cited = " · ".join(escape(w) for w in where if w)
    if cited:
        lines.append(f"  > — {cited}")
    if len(item.sources) > 1:  # the same obligation quoted in several places: every one
        lines.append(f"  > — quoted {len(item.sources)} times: {escape(item.places)}")
    return lines


def to_markdown(doc: ExportDoc) -> bytes:
    """The Markdown export (UTF-8)."""
    origin = doc.provenance
    lines = [f"# {escape(origin.title)}", ""]
    if origin.review_notice:
        lines += [f"> **⚠ {escape(origin.review_notice)}**", ""]
    lines += [f"- **{label}:** {escape(value)}" for label, value in origin.pairs() if value]
    lines += [f"- **{label}:** {escape(value)}" for label, value in change_pairs(doc)]
    lines += ["", "## Summary", "", escape(doc.summary) if doc.summary else "*none*", ""]
    lines += ["## Checklist", ""]
    sections = doc.sections
    for section in sections:
        if len(sections) > 1 or section is not None:
            lines += [f"### {escape(section or 'Other items')}", ""]
        for item in doc.items:
            if item.section == section:
                lines += _item_lines(item)
        lines.append("")
    return "\n".join(lines).encode("utf-8")

"""HTML text with selectolax (the Lexbor HTML5 parser; MIT, no dependencies): block by block,
headings kept as sections. Chosen over trafilatura, which is built to drop a web page's
boilerplate and may drop parts of a guideline with it (and pulls in lxml and four more
packages): a submitted document is all content."""

from __future__ import annotations

import re
from importlib.metadata import version

from guideline_core.documents.sniff import MediaType
from selectolax.lexbor import LexborHTMLParser, LexborNode

from .model import ExtractedDocument, ExtractionLimits, TextBuilder
from .sections import Heading, sections_from_headings

EXTRACTOR = "selectolax"
EXTRACTOR_VERSION = version("selectolax")
BLOCK_SEPARATOR = "\n\n"

_SKIPPED = frozenset(
    {"head", "script", "style", "noscript", "template", "svg", "math", "iframe", "object"}
)
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li",
        "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
        "thead", "tr", "ul",
    }
)  # fmt: skip
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_CELLS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")


def extract_html(html: str, limits: ExtractionLimits, *, media_type: str = MediaType.HTML,
                 extractor: str = EXTRACTOR, extractor_version: str = EXTRACTOR_VERSION,
                 ) -> ExtractedDocument:  # fmt: skip
    """The HTML's visible text, a paragraph per block, a section per heading."""
    blocks = _blocks(LexborHTMLParser(html).root)
    builder = TextBuilder(limits)
    headings: list[Heading] = []
    for level, raw in blocks:
        if builder.length:
            builder.append(BLOCK_SEPARATOR)
        start, _ = builder.append(raw)
        if level:
            headings.append(Heading(start, level, ""))
    text = builder.text()
    headings = [
        Heading(h.start, h.level, text[h.start : _line_end(text, h.start)]) for h in headings
    ]
    return ExtractedDocument(
        text=text,
        media_type=media_type,
        extractor=extractor,
        extractor_version=extractor_version,
        sections=sections_from_headings(headings, len(text)),
        warnings=builder.warnings(),
    )


def _line_end(text: str, start: int) -> int:
    end = text.find(BLOCK_SEPARATOR, start)
    return len(text) if end < 0 else end


def _blocks(root: LexborNode | None) -> list[tuple[int, str]]:
    """(heading level or 0, text) for every non-empty block, in document order. Iterative:
    a hostile document's nesting depth must not reach Python's recursion limit."""
    blocks: list[tuple[int, str]] = []
    inline: list[str] = []
    preformatted = 0

    def flush(level: int = 0) -> None:
        raw = "".join(inline)
        inline.clear()
        text = raw.strip("\n") if preformatted else _WHITESPACE.sub(" ", raw).strip()
        if text:
            blocks.append((level, text))

    if root is None:
        return blocks
    stack: list[tuple[LexborNode, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        tag = node.tag
        if leaving:
            if tag in _HEADINGS:
                flush(_HEADINGS[tag])
            elif tag == "pre":
                flush()
                preformatted -= 1
            else:
                flush()
            continue
        if tag == "-text":
            inline.append(node.text(deep=False) or "")
            continue
        if tag in _SKIPPED or tag in ("-comment", "!doctype"):
            continue
        if tag == "br":
            inline.append("\n" if preformatted else " ")
            continue
        if tag in _CELLS:
            inline.append(" ")
        if tag in _BLOCKS or tag in _HEADINGS:
            flush()
            if tag == "pre":
                preformatted += 1
            stack.append((node, True))
        children = list(node.iter(include_text=True))
        stack.extend((child, False) for child in reversed(children))
    flush()
    return blocks

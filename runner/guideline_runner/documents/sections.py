"""Sections from headings, for the formats that have them (HTML, DOCX, Markdown)."""

from __future__ import annotations

from dataclasses import dataclass

from .model import SectionSpan


@dataclass(frozen=True)
class Heading:
    """A heading at `start` in the text: its level (1-6) and its title."""

    start: int
    level: int
    title: str


def sections_from_headings(headings: list[Heading], text_length: int) -> list[SectionSpan]:
    """One section per heading, from it to the next heading, named by its heading path (the
    titles of the enclosing headings, outermost first). Text before the first heading belongs
    to no section."""
    sections: list[SectionSpan] = []
    path: list[tuple[int, str]] = []
    for index, heading in enumerate(headings):
        while path and path[-1][0] >= heading.level:
            path.pop()
        path.append((heading.level, heading.title))
        end = headings[index + 1].start if index + 1 < len(headings) else text_length
        if end > heading.start:
            sections.append(SectionSpan(heading.start, end, tuple(title for _, title in path)))
    return sections

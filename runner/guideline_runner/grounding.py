"""Grounding: find each item's quote in the guideline and record where it is.

A quote is looked for exactly first; if it is not there, in a normalised form of both the
quote and the text (whitespace runs as one blank, typographic quote marks and dashes as
ASCII ones, case folded), with every normalised character mapped back to its original
offset, so the source is always a passage of the text as submitted:
`text[start:end] == source.quote`. Nothing fuzzier: a quote the text does not contain
(paraphrased, merged from two places, invented) is not grounded, and is never "repaired"
into a nearby passage. Offsets are global: the whole text is searched, whichever
map-reduce part a passage was summarized in; a quote drawn from one section of the
guideline is looked for in that section first.

An item that merges the same obligation quoted in several places (`DraftItem.also`) keeps
each place found as one of its `sources`, the first being its `source`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from guideline_runner.grades import GradeFinder
from guideline_runner.models import ChecklistItem, DraftItem, Source
from guideline_runner.obligations import strength_of

# Shorter quotes ("must", "hands") would match almost anywhere and prove nothing.
MIN_QUOTE_CHARS: Final = 8
_FOLD: Final = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00ad": "",  # soft hyphen: invisible
    }
)
_QUOTE_MARKS: Final = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"


def _normalise(text: str) -> tuple[str, list[int]]:
    """`text` normalised, and for each of its characters the offset it came from."""
    chars: list[str] = []
    origin: list[int] = []
    blank = False
    for index, char in enumerate(text):
        if char.isspace():
            if not blank and chars:
                chars.append(" ")
                origin.append(index)
            blank = True
            continue
        blank = False
        for folded in char.translate(_FOLD).casefold():
            chars.append(folded)
            origin.append(index)
    if chars and chars[-1] == " ":
        chars.pop()
        origin.pop()
    return "".join(chars), origin


def _unwrapped(quote: str) -> str:
    """`quote` without blanks around it and without quote marks wrapping all of it (models
    often put a quotation in quotes)."""
    quote = quote.strip()
    if len(quote) >= 2 and quote[0] in _QUOTE_MARKS and quote[-1] in _QUOTE_MARKS:
        quote = quote[1:-1].strip()
    return quote


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    match: str


class Locator:
    """Finds quotes in one text (its normalised form is built once)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._normalised: tuple[str, list[int]] | None = None

    def _occurrences(self, haystack: str, needle: str) -> Iterable[int]:
        at = haystack.find(needle)
        while at >= 0:
            yield at
            at = haystack.find(needle, at + 1)

    def find(
        self,
        quote: str | None,
        taken: set[int] | frozenset[int] = frozenset(),
        within: tuple[int, int] | None = None,
    ) -> _Found | None:
        """Where `quote` is in the text (the first occurrence inside `within` whose start is
        not in `taken`, else the first not taken, else the first), or None."""
        if quote is None:
            return None
        exact = [(at, at + len(quote)) for at in self._occurrences(self.text, quote)]
        if exact and len(quote.strip()) >= MIN_QUOTE_CHARS:
            return self._pick(exact, taken, "exact", within)
        needle, _ = _normalise(_unwrapped(quote))
        if len(needle) < MIN_QUOTE_CHARS:
            return None
        if self._normalised is None:
            self._normalised = _normalise(self.text)
        haystack, origin = self._normalised
        spans = [
            (origin[at], origin[at + len(needle) - 1] + 1)
            for at in self._occurrences(haystack, needle)
        ]
        return self._pick(spans, taken, "normalized", within) if spans else None

    @staticmethod
    def _pick(
        spans: list[tuple[int, int]],
        taken: set[int] | frozenset[int],
        match: str,
        within: tuple[int, int] | None = None,
    ) -> _Found:
        free = [s for s in spans if s[0] not in taken]
        inside = [s for s in free if within is not None and within[0] <= s[0] < within[1]]
        start, end = (inside or free or spans)[0]
        return _Found(start, end, match)


def verified_span(text: str, draft: DraftItem) -> _Found | None:
    """The draft's own offsets if they hold its quote exactly (the extractive provider's
    case), else None."""
    start, end = draft.start, draft.end
    if start is None or end is None or draft.quote is None or not 0 <= start < end <= len(text):
        return None
    return _Found(start, end, "exact") if text[start:end] == draft.quote else None


@dataclass(frozen=True)
class Grounded:
    """Items with their sources, and how many ungrounded ones were left out."""

    items: list[ChecklistItem]
    proposed: int
    grounded: int
    dropped: int


def ground(drafts: list[DraftItem], text: str, *, drop_ungrounded: bool = False) -> Grounded:
    """Each draft as a result item with its verified source (or `grounded: false`);
    ungrounded items are left out if `drop_ungrounded`. A grounded item's strength is
    the one its source words and its grade the one stated near it (the provider's own
    claim of either is not trusted); an ungrounded item has neither."""
    locator = Locator(text)
    grades = GradeFinder(text)
    taken: set[int] = set()
    items: list[ChecklistItem] = []
    grounded = dropped = 0
    for draft in drafts:
        found = verified_span(text, draft) or locator.find(draft.quote, taken, draft.within)
        fields = draft.model_dump(include={"item", "priority", "category"})
        if found is None:
            if drop_ungrounded:
                dropped += 1
                continue
            items.append(ChecklistItem(**fields, source=None, grounded=False))
            continue
        grounded += 1
        taken.add(found.start)
        source = _source(text, found)
        sources = [source]
        for again in draft.also:
            more = verified_span(text, again) or locator.find(again.quote, taken, again.within)
            if more is not None and more.start not in taken:
                taken.add(more.start)
                sources.append(_source(text, more))
        items.append(
            ChecklistItem(
                **fields,
                source=source,
                sources=sources,
                grounded=True,
                strength=strength_of(source.quote),
                grade=grades.find(found.start, found.end),
            )
        )
    return Grounded(items=items, proposed=len(drafts), grounded=grounded, dropped=dropped)


def _source(text: str, found: _Found) -> Source:
    return Source(
        quote=text[found.start : found.end],
        start=found.start,
        end=found.end,
        match=found.match,
    )


def overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    """Characters two spans share."""
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def covers(source: tuple[int, int], passage: tuple[int, int]) -> bool:
    """True if a source covers a passage: at least half of the shorter of the two lies in
    the other (a quote of part of a sentence covers it; a quote that only touches a
    sentence's edge does not)."""
    shorter = min(source[1] - source[0], passage[1] - passage[0])
    return shorter > 0 and 2 * overlap(source, passage) >= shorter

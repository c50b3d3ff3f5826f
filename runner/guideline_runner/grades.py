"""The grade or class a guideline states for a recommendation, found verbatim near the
item's quote, never inferred.

Recognised wordings: GRADE ("(Strong)", "(Weak)", "Strong recommendation, moderate-quality
evidence", "weak recommendation, very low quality of evidence"), VA/DoD ("Strong for",
"Weak against"), ACC/AHA ("Class I, Level B", "Class IIa; Level of Evidence: C",
"COR I, LOE B-R"), USPSTF ("Grade A", "Grade: B", "(B recommendation)", "(I statement)")
and CDC categories ("Category IB", "recommendation category: A; evidence type: 4").

Where: in the quote itself; else on the quote's line (a table row); else in the sentence
right after it when that sentence opens with the grade or is not a recommendation of its
own ("(Strong)" after the sentence it grades); else in the sentence right before it when
that sentence opens a line and is little more than the grade (a label such as "Grade: B"
above it); else in the heading of the quote's section ("Class I Recommendations").
"""

from __future__ import annotations

import bisect
import re
from typing import Final

from guideline_runner.models import Grade
from guideline_runner.obligations import priority_of
from guideline_runner.text import Unit, split_units

_LEVEL: Final = r"(?:Level|LOE)(?: of Evidence)?:? ?[ABC](?:-(?:R|NR|LD|EO))?"
_CLASS: Final = r"(?:Class|COR):? ?(?:III|IIb|IIa|II|I)(?:\b|(?=\s))"
_QUALITY: Final = (
    r"(?:very[- ]low|low|moderate|high)[- ](?:quality|certainty)(?: of)?(?: the)? evidence"
)
_GRADE_PATTERNS: Final = (
    # ACC/AHA class with its level of evidence, or alone.
    re.compile(rf"\b{_CLASS}(?:[,;:]? (?:\([A-Za-z ]+\) )?{_LEVEL})?"),
    # GRADE and its cousins, with the quality of evidence when stated.
    re.compile(
        rf"\b(?:[Ss]trong|[Ww]eak|[Cc]onditional|STRONG|WEAK|CONDITIONAL) "
        rf"(?:recommendation|RECOMMENDATION)s?(?:[,;:] ?{_QUALITY})?",
    ),
    re.compile(r"\b(?:Strong|Weak|STRONG|WEAK) (?:for|against|For|Against|FOR|AGAINST)\b"),
    re.compile(r"(?<=\()(?:Strong|Weak|Conditional|STRONG|WEAK|CONDITIONAL)(?=\))"),
    # USPSTF letter grades.
    re.compile(r"\bGrade:? ?[ABCDI]\b(?: [Rr]ecommendation| [Ss]tatement)?"),
    re.compile(r"(?<=\()[ABCD] [Rr]ecommendation(?=\))|(?<=\()I [Ss]tatement(?=\))"),
    # CDC categories: infection control's, and the 2022 opioid guideline's with its
    # evidence type ("recommendation category: A; evidence type: 4").
    re.compile(r"\bCategory (?:IA|IB|IC|II)\b"),
    re.compile(r"\b[Rr]ecommendation category:? ?[AB]\b(?:[;,] ?evidence type:? ?[1-4]\b)?"),
)
# A neighbouring sentence no longer than the grade plus this is a label for the item.
_LABEL_SLACK: Final = 24


def _first_grade(text: str, start: int, end: int) -> Grade | None:
    """The earliest grade wording inside `text[start:end]`."""
    best: re.Match[str] | None = None
    for pattern in _GRADE_PATTERNS:
        found = pattern.search(text, start, end)
        if found and (best is None or found.start() < best.start()):
            best = found
    if best is None:
        return None
    return Grade(text=best.group(), start=best.start(), end=best.end())


class GradeFinder:
    """Finds the grade of items in one guideline (its sentences are split once)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._units: list[Unit] | None = None
        self._starts: list[int] = []

    def _sentences(self) -> list[Unit]:
        if self._units is None:
            self._units = split_units(self.text)
            self._starts = [unit.start for unit in self._units]
        return self._units

    def _around(self, start: int, end: int) -> tuple[Unit | None, Unit | None, Unit | None]:
        """The sentence holding the passage `start:end`'s start, the one right before the
        passage and the one right after it."""
        units = self._sentences()
        at = bisect.bisect_right(self._starts, start) - 1  # the last sentence from before start
        holder = units[at] if at >= 0 and units[at].end > start else None
        if holder is not None:
            at -= 1
        following = bisect.bisect_left(self._starts, end)
        before = units[at] if at >= 0 else None
        after = units[following] if following < len(units) else None
        return holder, before, after

    def _starts_line(self, offset: int) -> bool:
        return not self.text[self.text.rfind("\n", 0, offset) + 1 : offset].strip(" \t|*-")

    def find(self, start: int, end: int) -> Grade | None:
        """The grade stated for the passage `text[start:end]`, or None."""
        text = self.text
        found = _first_grade(text, start, end)
        if found:
            return found
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        found = _first_grade(text, line_start, line_end)
        if found:
            return found
        holder, before, after = self._around(start, end)
        if after is not None:
            found = _first_grade(text, after.start, after.end)
            opens_with_it = found is not None and found.start - after.start <= 2
            if found and (opens_with_it or priority_of(after.text) is None):
                return found
        if before is not None and self._starts_line(before.start):
            # A label line above the item ("Grade: B"), not the tail of the item before.
            found = _first_grade(text, before.start, before.end)
            if found and before.end - before.start <= len(found.text) + _LABEL_SLACK:
                return found
        heading = holder.heading if holder is not None else None
        at = text.rfind(heading, 0, start) if heading else -1
        if heading and at >= 0:
            return _first_grade(text, at, at + len(heading))
        return None

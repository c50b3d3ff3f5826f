"""The obligations of a guideline: its sentences that require, forbid or recommend an
action, found with their offsets so that coverage by checklist items can be measured.

A sentence is normative by its strongest modal wording:
- obligations and prohibitions (priority high): must, must not, shall, shall not,
  required (to), requires, mandatory, never, prohibited, forbidden, is/are not
  permitted/allowed, may not, cannot, do not, don't, always, need(s) to, has/have to,
  is/are responsible for;
- recommendations (medium): should, ought to, ensure(s), recommended, recommend(s),
  avoid, expected to, make sure, and imperatives (a sentence opening with an action
  verb such as "Wear", "Report", "Dispose");
- options (low): may, can, could, optional(ly), consider, encouraged.

An obligation, for coverage, is a high or medium sentence: what a reader of the
checklist must not miss. Options are not obligations. Sentences are found by pysbd (see
`text.split_units`), headings excluded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from guideline_runner.models import Priority
from guideline_runner.text import Unit, split_units


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_HIGH: Final = re.compile(
    r"\b(must|shall|required|requires?|mandatory|never|prohibited|forbidden|"
    r"(?:is|are) not (?:permitted|allowed)|may not|cannot|can not|do not|don't|"
    r"must not|shall not|always|need(?:s)? to|ha(?:ve|s) to|(?:is|are) responsible for)\b",
    re.IGNORECASE,
)
_MEDIUM: Final = re.compile(
    r"\b(should|ought to|ensures?|recommended|recommends?|avoid|expected to|"
    r"make sure)\b",
    re.IGNORECASE,
)
_LOW: Final = re.compile(r"\b(may|can|could|optional(?:ly)?|consider|encouraged)\b", re.IGNORECASE)
_IMPERATIVE_VERBS: Final = _wordset(
    """use keep check verify review document record report store encrypt wear wash follow
    notify inform submit obtain complete maintain update lock label dispose remove clean
    disinfect train test log protect restrict limit apply confirm provide include assign
    approve monitor audit rotate enable disable install patch validate sign return call
    contact escalate retain delete archive ensure avoid schedule inspect measure prepare
    wait register back secure close turn put place"""
)
_NOT_IMPERATIVE_NEXT: Final = frozenset({"of", "is", "are", "was", "were", "by", "and", "or"})

OBLIGATION_PRIORITIES: Final = frozenset({Priority.HIGH, Priority.MEDIUM})


def priority_of(sentence: str) -> Priority | None:
    """The priority a normative or imperative sentence implies, None for a descriptive
    one."""
    if _HIGH.search(sentence):
        return Priority.HIGH
    if _MEDIUM.search(sentence):
        return Priority.MEDIUM
    words = sentence.split(maxsplit=2)
    if words:
        first = words[0].lower().strip(",:;")
        second = words[1].lower() if len(words) > 1 else ""
        if first in _IMPERATIVE_VERBS and second not in _NOT_IMPERATIVE_NEXT:
            return Priority.MEDIUM
    if _LOW.search(sentence):
        return Priority.LOW
    return None


@dataclass(frozen=True)
class Obligation:
    """A normative sentence: `text[start:end]` of the guideline is `quote`."""

    quote: str
    start: int
    end: int
    priority: Priority
    heading: str | None = None


def obligations_of(text: str, units: list[Unit] | None = None) -> list[Obligation]:
    """The obligation sentences of `text` in order (from `units` if already split)."""
    found = []
    for unit in split_units(text) if units is None else units:
        priority = priority_of(unit.text)
        if priority in OBLIGATION_PRIORITIES:
            found.append(
                Obligation(
                    text[unit.start : unit.end], unit.start, unit.end, priority, unit.heading
                )
            )
    return found

"""The quality block of a result and the review gate: how many items are grounded, which
obligations of the guideline no item's source covers, which items repeat each other, and
whether a person should review the result before it is used (it stays COMPLETED: the
gate informs, it does not fail)."""

from __future__ import annotations

import re
from typing import Final

from guideline_runner.grounding import Grounded, covers
from guideline_runner.models import ChecklistItem, Passage, Quality, Review, ReviewThresholds
from guideline_runner.obligations import Obligation

_NOT_WORD: Final = re.compile(r"[\W_]+")


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 1.0


def duplicate_groups(items: list[ChecklistItem]) -> list[list[int]]:
    """Groups (two or more) of item indices that say the same thing: the same words once
    case and punctuation are ignored, or the same source passage."""
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen: dict[object, int] = {}
    for index, item in enumerate(items):
        keys: list[object] = [_NOT_WORD.sub(" ", item.item.casefold()).strip()]
        if item.source is not None:
            keys.append((item.source.start, item.source.end))
        for key in keys:
            if key in seen:
                parent[root(index)] = root(seen[key])
            else:
                seen[key] = index
    groups: dict[int, list[int]] = {}
    for index in range(len(items)):
        groups.setdefault(root(index), []).append(index)
    return [group for group in groups.values() if len(group) > 1]


def assess(grounded: Grounded, obligations: list[Obligation], *, capped_items: int = 0) -> Quality:
    """The quality block of `grounded` items against the guideline's obligations
    (`capped_items`: items the max_checklist_items cap left out)."""
    # Every place an item quotes counts: the same obligation repeated is covered by one item.
    sources = [(s.start, s.end) for item in grounded.items for s in item.sources]
    uncovered = [
        Passage(text=o.quote, start=o.start, end=o.end)
        for o in obligations
        if not any(covers(source, (o.start, o.end)) for source in sources)
    ]
    covered = len(obligations) - len(uncovered)
    return Quality(
        items=grounded.proposed,
        grounded_items=grounded.grounded,
        ungrounded_items=grounded.proposed - grounded.grounded,
        dropped_items=grounded.dropped,
        capped_items=capped_items,
        grounding=_ratio(grounded.grounded, grounded.proposed),
        obligations=len(obligations),
        covered_obligations=covered,
        coverage=_ratio(covered, len(obligations)),
        uncovered=uncovered,
        duplicates=duplicate_groups(grounded.items),
    )


def review(quality: Quality, thresholds: ReviewThresholds) -> Review:
    """The reasons (none: no review needed) a result falls below `thresholds`."""
    reasons = []
    if quality.grounding < thresholds.min_grounding:
        reasons.append(
            f"{quality.ungrounded_items} of {quality.items} items quote nothing in the "
            f"guideline (grounding {quality.grounding:.0%} < {thresholds.min_grounding:.0%})"
        )
    if quality.coverage < thresholds.min_coverage:
        reasons.append(
            f"{len(quality.uncovered)} of {quality.obligations} obligations are covered by "
            f"no item (coverage {quality.coverage:.0%} < {thresholds.min_coverage:.0%})"
        )
    return Review(thresholds=thresholds, reasons=reasons)

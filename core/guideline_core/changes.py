"""What changed between the checklist of a guideline and that of the version it
supersedes: a pure function of the two stored results (`result` of each job).

Items are matched by their source passages, not by position or offsets (an edit earlier
in the text moves every offset after it): first by the same passage (whitespace and case
aside), then, among what is left, by a passage that was edited (similar enough wording,
`MIN_SIMILARITY`), last by the same wording (a source that appeared or vanished). A
matched pair whose item, priority or category differ, or whose
passage was edited, is `changed`; new items without a match are `added`, old ones
`removed`. Items without a source are matched by their wording only. `newly_uncovered`
are the obligations no item covers now that were not uncovered before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from difflib import SequenceMatcher
from typing import Any, Final

MIN_SIMILARITY: Final = 0.6
_BLANKS: Final = re.compile(r"\s+")


def _norm(text: str | None) -> str:
    return _BLANKS.sub(" ", text or "").strip().casefold()


def _passage(item: Mapping[str, Any]) -> str:
    source = item.get("source") or {}
    return _norm(source.get("quote"))


def _same_item(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(
        _norm(str(a.get(k))) == _norm(str(b.get(k))) for k in ("item", "priority", "category")
    )


def _pair(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """new index -> old index of matched items."""
    matched: dict[int, int] = {}
    free_old = set(range(len(old)))
    by_passage: dict[str, list[int]] = {}
    for i, item in enumerate(old):
        by_passage.setdefault(_passage(item) or f"\0item:{_norm(item.get('item'))}", []).append(i)
    for j, item in enumerate(new):
        key = _passage(item) or f"\0item:{_norm(item.get('item'))}"
        candidates = [i for i in by_passage.get(key, []) if i in free_old]
        if candidates:
            matched[j] = candidates[0]
            free_old.discard(candidates[0])
    # Edited passages: the most similar free old passage, if similar enough.
    for j, item in enumerate(new):
        if j in matched or not _passage(item):
            continue
        best, best_ratio = None, MIN_SIMILARITY
        for i in sorted(free_old):
            if not _passage(old[i]):
                continue
            ratio = SequenceMatcher(None, _passage(old[i]), _passage(item), autojunk=False).ratio()
            if ratio >= best_ratio:
                best, best_ratio = i, ratio
        if best is not None:
            matched[j] = best
            free_old.discard(best)
    # Last, the same wording: an item whose source appeared, vanished or moved elsewhere.
    for j, item in enumerate(new):
        if j in matched:
            continue
        same = [i for i in sorted(free_old) if _norm(old[i].get("item")) == _norm(item.get("item"))]
        if same:
            matched[j] = same[0]
            free_old.discard(same[0])
    return matched


def checklist_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], supersedes: str
) -> dict[str, Any]:
    """The `changes` of result `new` against `old`, the result of job `supersedes`."""
    old_items = list(old.get("checklist") or [])
    new_items = list(new.get("checklist") or [])
    matched = _pair(old_items, new_items)
    changed = []
    unchanged = 0
    for j, i in sorted(matched.items()):
        before, after = old_items[i], new_items[j]
        if _same_item(before, after) and _passage(before) == _passage(after):
            unchanged += 1
        else:
            changed.append({"before": before, "after": after})
    used_old = set(matched.values())
    before_uncovered = {
        _norm(p.get("text")) for p in (old.get("quality") or {}).get("uncovered", [])
    }
    newly_uncovered = [
        p
        for p in (new.get("quality") or {}).get("uncovered", [])
        if _norm(p.get("text")) not in before_uncovered
    ]
    return {
        "supersedes": supersedes,
        "added": [item for j, item in enumerate(new_items) if j not in matched],
        "removed": [item for i, item in enumerate(old_items) if i not in used_old],
        "changed": changed,
        "unchanged": unchanged,
        "newly_uncovered": newly_uncovered,
    }

"""What changed between the checklist of a guideline and that of the version it
supersedes: a pure function of the two stored results (`result` of each job), computed
once when the superseding job completes (`db.mirror_state` stores it in `jobs.changes`).

Items are matched by their source passages, not by position or offsets (an edit earlier
in the text moves every offset after it): first by the same passage (whitespace and case
aside), then, among what is left, by a passage that was edited (similar enough wording,
`MIN_SIMILARITY`), last by the same wording (a source that appeared or vanished). A
matched pair whose item, priority or category differ, or whose passage was edited, is
`changed`; new items without a match are `added`, old ones `removed`. Items without a
source are matched by their wording only. `newly_uncovered` are the obligations no item
covers now that were not uncovered before.

The work is bounded, whatever a result holds: exact matches go through dicts (linear);
an edited passage is looked for among at most `CANDIDATES_PER_ITEM` old passages, found
through an index of their words read rarest word first and at most `POSTINGS_PER_ITEM`
entries per item; similarity is the Dice coefficient of character trigrams of the first
`MAX_COMPARED_CHARS` characters of each passage (linear in that length). Only the first
`MAX_ITEMS` items of each checklist are compared; `capped` says when there were more.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

MIN_SIMILARITY: Final = 0.5
MAX_COMPARED_CHARS: Final = 1000
MAX_ITEMS: Final = 1000
CANDIDATES_PER_ITEM: Final = 8
POSTINGS_PER_ITEM: Final = 256
_BLANKS: Final = re.compile(r"\s+")
_WORDS: Final = re.compile(r"\w+")


@dataclass
class Work:
    """What one comparison cost: word-index entries read and similarities computed."""

    postings: int = 0
    similarities: int = 0


def _norm(text: str | None) -> str:
    return _BLANKS.sub(" ", text or "").strip().casefold()


def _passage(item: Mapping[str, Any]) -> str:
    source = item.get("source") or {}
    return _norm(source.get("quote"))


def _wording(item: Mapping[str, Any]) -> str:
    return _norm(item.get("item"))


def _same_item(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(
        _norm(str(a.get(k))) == _norm(str(b.get(k))) for k in ("item", "priority", "category")
    )


def _trigrams(text: str) -> frozenset[str]:
    return frozenset(text[i : i + 3] for i in range(max(len(text) - 2, 1)))


def similarity(a: str, b: str) -> float:
    """Dice coefficient of the character trigrams of the first MAX_COMPARED_CHARS of each."""
    x, y = _trigrams(a[:MAX_COMPARED_CHARS]), _trigrams(b[:MAX_COMPARED_CHARS])
    return 2 * len(x & y) / (len(x) + len(y)) if x or y else 1.0


def _match_exact(
    keys_old: Sequence[str], keys_new: Sequence[str], matched: dict[int, int], free_old: set[int]
) -> None:
    """Pair each unmatched new item with the first free old one of the same non-empty key."""
    buckets: dict[str, deque[int]] = {}
    for i in sorted(free_old):
        if keys_old[i]:
            buckets.setdefault(keys_old[i], deque()).append(i)
    for j, key in enumerate(keys_new):
        bucket = buckets.get(key) if key and j not in matched else None
        while bucket and bucket[0] not in free_old:
            bucket.popleft()
        if bucket:
            matched[j] = bucket.popleft()
            free_old.discard(matched[j])


def _match_edited(
    old: Sequence[str], new: Sequence[str], matched: dict[int, int], free_old: set[int], work: Work
) -> None:
    """Pair each unmatched new passage with the most similar free old passage among its
    candidates (the old passages sharing most of its rarest words), if similar enough."""
    index: dict[str, list[int]] = {}
    for i in sorted(free_old):
        for word in set(_WORDS.findall(old[i][:MAX_COMPARED_CHARS])):
            index.setdefault(word, []).append(i)
    for j, text in enumerate(new):
        if j in matched or not text:
            continue
        shared: Counter[int] = Counter()
        budget = POSTINGS_PER_ITEM
        words = set(_WORDS.findall(text[:MAX_COMPARED_CHARS]))
        for word in sorted(words, key=lambda w: (len(index.get(w, ())), w)):
            postings = index.get(word, [])[:budget]
            budget -= len(postings)
            shared.update(i for i in postings if i in free_old)
            if budget <= 0:
                break
        work.postings += POSTINGS_PER_ITEM - max(budget, 0)
        best, best_score = None, MIN_SIMILARITY
        for i in sorted(i for i, _ in shared.most_common(CANDIDATES_PER_ITEM)):
            work.similarities += 1
            score = similarity(old[i], text)
            if score >= best_score:
                best, best_score = i, score
        if best is not None:
            matched[j] = best
            free_old.discard(best)


def _pair(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], work: Work
) -> dict[int, int]:
    """new index -> old index of matched items."""
    matched: dict[int, int] = {}
    free_old = set(range(len(old)))
    passages_old, passages_new = [_passage(i) for i in old], [_passage(i) for i in new]
    wording_old, wording_new = [_wording(i) for i in old], [_wording(i) for i in new]
    # The same passage; an item without a source by its wording alone.
    _match_exact(
        [p or f"\0item:{w}" for p, w in zip(passages_old, wording_old, strict=True)],
        [p or f"\0item:{w}" for p, w in zip(passages_new, wording_new, strict=True)],
        matched,
        free_old,
    )
    # Edited passages.
    _match_edited(passages_old, passages_new, matched, free_old, work)
    # Last, the same wording: an item whose source appeared, vanished or moved elsewhere.
    _match_exact(wording_old, wording_new, matched, free_old)
    return matched


def checklist_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], supersedes: str, work: Work | None = None
) -> dict[str, Any]:
    """The `changes` of result `new` against `old`, the result of job `supersedes`
    (`work`, if given, counts what the comparison cost)."""
    old_all, new_all = list(old.get("checklist") or []), list(new.get("checklist") or [])
    old_items, new_items = old_all[:MAX_ITEMS], new_all[:MAX_ITEMS]
    matched = _pair(old_items, new_items, work or Work())
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
        "capped": len(old_all) > MAX_ITEMS or len(new_all) > MAX_ITEMS,
    }


def job_changes(
    job: Mapping[str, Any], result: Mapping[str, Any], superseded: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The `changes` of a COMPLETED job (`result`, and the row's `tenant`, `supersedes`)
    against the row of the job it supersedes (None: gone); `available` is false, with the
    reason, while that job has no result."""
    supersedes = str(job["supersedes"])
    if superseded is not None and superseded["tenant"] != job["tenant"]:
        # A GuidelineJob applied with kubectl may name any event_id: another tenant's job
        # is as unknown to it as a missing one, and its checklist is never compared.
        superseded = None
    if (
        superseded is None
        or superseded["status"] != "COMPLETED"
        or not isinstance(superseded.get("result"), dict)
    ):
        state = "gone" if superseded is None else superseded["status"]
        return {
            "supersedes": supersedes,
            "available": False,
            "reason": f"the superseded job is {state}, so there is no checklist to compare",
        }
    return {"available": True, **checklist_changes(superseded["result"], result, supersedes)}

"""The `extractive` provider: offline and deterministic, no network and no model. It is
not an LLM and its results say so (`provider: extractive`, `model: extractive-v1`).

- Summary: the guideline's most representative sentences, kept in their original order.
  A sentence scores by the mean frequency of its content words in the whole text (what
  the guideline keeps talking about) plus a bonus for normative wording and for opening
  the text; the top sentences are kept within a length budget.
- Checklist: the guideline's normative sentences (must, shall, should, required, ensure,
  never, do not, ...) and imperative ones ("Wear gloves ..."), one item each, in order.
  Priority comes from the strongest modal in the sentence: obligations and prohibitions
  (must, shall, required, never, do not, ...) high; recommendations (should, ensure,
  recommended, avoid, imperatives) medium; options (may, can, optional) low. Category is
  the section heading above the sentence, else a topic found by keywords, else `general`.
  Each item's quote is its sentence as written, with its offsets: grounded by
  construction. A sentence that opens with a pronoun ("They must be put on ...") would
  lose what it refers to, so the item starts with the sentence before it in the same
  section ("Gloves are not a substitute for hand hygiene. They must be put on ...", the
  quote spanning both), or, when that is too long or there is none, with the section
  heading ("Gloves: They must be put on ...").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Final

from guideline_runner.models import MAX_CATEGORY_CHARS, DraftItem, Priority, Usage
from guideline_runner.obligations import priority_of
from guideline_runner.providers.base import Completion
from guideline_runner.text import Unit, split_units

__all__ = ["ExtractiveProvider", "extractive_checklist", "extractive_summary", "priority_of"]

MODEL: Final = "extractive-v1"
# A full-length guideline states hundreds of obligations (SP 800-63A-4 and 63B-4 together:
# 752); the setting's default too.
DEFAULT_MAX_ITEMS: Final = 1000


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


MAX_ITEM_TEXT: Final = 300
# Words that open a sentence which cannot stand alone: it refers to the one before.
_REFERRING: Final = re.compile(
    r"^(?:they|them|their|it|its|this|these|those|that|such|he|she|both|each of them)\b",
    re.IGNORECASE,
)
SUMMARY_BUDGET_CHARS: Final = 1500

_TOPICS: Final = (
    ("security", ("password", "access", "encrypt", "credential", "authentic", "secur", "patch")),
    ("privacy", ("personal data", "privacy", "consent", "gdpr", "confidential")),
    ("hygiene", ("hand", "hygiene", "glove", "disinfect", "clean", "wash")),
    ("safety", ("safety", "hazard", "injur", "fire", "emergency", "protective")),
    ("documentation", ("document", "record", "log ", "report")),
    ("training", ("train",)),
    ("communication", ("notify", "inform", "communicat", "contact", "escalat")),
)
_WORD: Final = re.compile(r"[a-z][a-z'-]+")
_STOPWORDS: Final = _wordset(
    """the and for are but not you all any can had her was one our out has have him his how
    its may new now old see two way who did get let say she too use that with this from
    they will would there their what about which when make like than then them these some
    into only other also more most such each must shall should been being were does done
    your yours very just over under upon per any both same while where whom whose why within
    without before after during between through against above below again further once here
    off own nor few"""
)


def _category(unit: Unit) -> str:
    if unit.heading:
        label = " ".join(unit.heading.lower().split()).strip(" :-#")
        label = re.sub(r"^(?:\d+(?:\.\d+)*\.?|[ivx]+\.)\s+", "", label)
        if label:
            return label[:MAX_CATEGORY_CHARS]
    text = unit.text.lower() + " "
    for topic, keywords in _TOPICS:
        if any(k in text for k in keywords):
            return topic
    return "general"


def _item_text(sentence: str) -> str:
    if len(sentence) <= MAX_ITEM_TEXT:
        return sentence
    cut = sentence.rfind(" ", 0, MAX_ITEM_TEXT - 1)
    return sentence[: cut if cut > 0 else MAX_ITEM_TEXT - 1].rstrip(",;: ") + "…"


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOPWORDS]


_BONUS: Final = {Priority.HIGH: 0.6, Priority.MEDIUM: 0.4, Priority.LOW: 0.15}


def extractive_summary(text: str, budget_chars: int = SUMMARY_BUDGET_CHARS) -> str:
    """The most representative sentences of `text`, in their original order."""
    units = split_units(text)
    if not units:
        return text.strip()
    frequencies = Counter(_content_words(text))
    top = max(frequencies.values(), default=1)
    scored: list[tuple[float, int]] = []
    for unit in units:
        words = _content_words(unit.text)
        if len(unit.text.split()) < 4 or not words:
            score = 0.0
        else:
            score = sum(frequencies[w] / top for w in words) / len(words)
            priority = priority_of(unit.text)
            score += _BONUS[priority] if priority else 0.0
            score += 0.2 if unit.index == 0 else 0.0
        scored.append((score, unit.index))
    wanted = min(len(units), max(3, min(12, math.ceil(len(units) / 5))))
    chosen: list[int] = []
    used = 0
    # Highest score first; ties go to the earlier sentence (determinism).
    for _score, index in sorted(scored, key=lambda s: (-s[0], s[1])):
        length = len(units[index].text) + 1
        if chosen and used + length > budget_chars:
            continue
        chosen.append(index)
        used += length
        if len(chosen) >= wanted:
            break
    return " ".join(units[i].text for i in sorted(chosen))


def _standalone(unit: Unit, before: Unit | None, text: str) -> DraftItem | None:
    """The item of a normative `unit`, with the antecedent a referring sentence needs."""
    priority = priority_of(unit.text)
    if priority is None:
        return None
    wording, start = unit.text, unit.start
    if _REFERRING.match(unit.text):
        joined = f"{before.text} {unit.text}" if before is not None else ""
        if before is not None and before.heading == unit.heading and len(joined) <= MAX_ITEM_TEXT:
            wording, start = joined, before.start
        elif unit.heading:
            wording = f"{unit.heading}: {unit.text}"
    return DraftItem(
        item=_item_text(wording),
        priority=priority,
        category=_category(unit),
        quote=text[start : unit.end],
        start=start,
        end=unit.end,
    )


def extractive_checklist(text: str, max_items: int) -> list[DraftItem]:
    """One item per normative or imperative sentence of `text`, in order; if there are
    more than `max_items`, the higher-priority ones are kept."""
    return _checklist(text, max_items)[0]


def _checklist(text: str, max_items: int) -> tuple[list[DraftItem], int]:
    """The checklist of `text` and how many items the cap left out."""
    candidates: list[tuple[int, DraftItem]] = []
    # A sentence repeated in another section (the same requirement at AAL2 and at AAL3)
    # is another obligation; repeated in the same section, it is the same one: one item,
    # the repeat one more of its sources (`also`).
    seen: dict[tuple[str | None, str], DraftItem] = {}
    units = split_units(text)
    for unit in units:
        key = (unit.heading, unit.text.lower())
        before = units[unit.index - 1] if unit.index else None
        item = _standalone(unit, before, text)
        if item is None:
            continue
        if key in seen:
            seen[key].also.append(item)
            continue
        seen[key] = item
        candidates.append((unit.index, item))
    rank = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}
    kept = sorted(candidates, key=lambda c: (rank[c[1].priority], c[0]))[:max_items]
    items = [item for _index, item in sorted(kept, key=lambda c: c[0])]
    return items, len(candidates) - len(kept)


class ExtractiveProvider:
    """The offline provider: extractive summary, checklist from normative sentences."""

    name = "extractive"
    model = MODEL
    max_input_chars: int | None = None

    def __init__(self, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        self.max_items = max_items

    def summarize(self, text: str, *, part: int = 1, parts: int = 1) -> Completion[str]:
        """An extractive summary of `text`."""
        return Completion(extractive_summary(text), Usage())

    def combine(self, summaries: Sequence[str]) -> Completion[str]:
        """An extractive summary of the joined summaries."""
        return Completion(extractive_summary("\n\n".join(summaries)), Usage())

    def checklist(self, summary: str, *, guideline: str) -> Completion[list[DraftItem]]:
        """Items from the normative sentences of the whole guideline (not the summary,
        which keeps only some of them)."""
        items, left_out = _checklist(guideline, self.max_items)
        return Completion(items, Usage(), left_out=left_out)

    def close(self) -> None:
        """Nothing to release."""

"""Step 2, the checklist: the guideline's sections, one provider call for each (with the
summary as context) not kept from an earlier attempt, and their items merged in the text's
order, an obligation quoted by several sections kept once, cut at the total cap."""

from __future__ import annotations

import hashlib
import logging
import threading

from guideline_core.splitting import checklist_sections

from guideline_runner.chain.calls import call_all
from guideline_runner.errors import ChainError
from guideline_runner.models import Capped, DraftItem, Usage
from guideline_runner.progress import Progress
from guideline_runner.providers.base import Completion, Provider

log = logging.getLogger(__package__)  # the chain's log lines keep one logger name


def section_key(section: str) -> str:
    """The key of a section's kept checklist answer: its text's SHA-256."""
    return hashlib.sha256(section.encode("utf-8", "surrogatepass")).hexdigest()


def _same_obligation(item: DraftItem) -> str:
    """What makes two sections' items one: the passage quoted (else the item), compared
    without case, blanks or end punctuation."""
    return " ".join((item.quote or item.item).casefold().split()).strip(" .;:")


def sections_of(text: str, provider: Provider) -> list[str]:
    """The sections `text`'s checklist is drawn from by `provider`: the whole text for a
    provider without an input limit (the extractive one), else `checklist_sections`."""
    limit = provider.max_input_chars
    return [text] if limit is None else checklist_sections(text, limit)


def plan_checklist(
    text: str,
    provider: Provider,
    progress: Progress,
    kept: dict[str, list[DraftItem]] | None = None,
) -> list[str]:
    """`sections_of(text, provider)`, told to `progress`: every section, one checklist
    call for each not `kept` from an earlier attempt, and those kept as done."""
    sections = sections_of(text, provider)
    kept = kept or {}
    left = sum(1 for section in sections if section_key(section) not in kept)
    progress.plan(calls=left, sections=len(sections))
    if left < len(sections):
        progress.sections_done(len(sections) - left)
    return sections


def _merge(sections: list[str], answers: list[Completion[list[DraftItem]]]) -> list[DraftItem]:
    """The sections' items in the text's order; with several sections, each item knows
    its section's span (`within`), and one quoting the same passage as an earlier item is
    put in that item's `also` instead."""
    merged: list[DraftItem] = []
    seen: dict[str, DraftItem] = {}
    offset = 0
    for section, answer in zip(sections, answers, strict=True):
        span = (offset, offset + len(section))
        offset += len(section)
        for draft in answer.value:
            item = (
                draft.model_copy(update={"within": span, "also": []})
                if len(sections) > 1
                else draft
            )
            key = _same_obligation(item)
            if len(sections) > 1 and key in seen:
                seen[key].also.append(item)  # one item, its sources kept
                continue
            seen[key] = item
            merged.append(item)
    return merged


def checklist(
    text: str,
    summary: str,
    provider: Provider,
    cancel: threading.Event,
    concurrency: int = 1,
    max_items: int | None = None,
    kept: dict[str, list[DraftItem]] | None = None,
    progress: Progress | None = None,
    sections: list[str] | None = None,
) -> Completion[tuple[list[DraftItem], Capped | None]]:
    """Step 2: checklist items drawn from every section of `text` (its own headings, then
    size: `checklist_sections`), one call per section with up to `concurrency` in flight,
    merged in the text's order with items quoting the same passage kept once (the others
    in its `also`, each quote looked for in its own section first), and cut at
    `max_items`; with which caps were reached. A provider without an input limit (the
    extractive one) gets the whole text in one call. Sections whose answer an earlier
    attempt `kept` (by `section_key`) are not asked again; on a failure the answers done
    so far are left in the error's `keep` for `status.partial`. `progress` counts each
    section's answer (`sections`: the ones `plan_checklist` planned, else computed here)."""
    limit = provider.max_input_chars
    sections = sections if sections is not None else sections_of(text, provider)
    kept = kept or {}
    if len(sections) == 1:
        calls = [lambda: provider.checklist(summary, guideline=text)]
    else:
        calls = [
            lambda number=number, section=section: provider.checklist(  # type: ignore[call-arg, misc]
                summary, guideline=section, section=number, sections=len(sections)
            )
            for number, section in enumerate(sections, start=1)
        ]
    keys = [section_key(section) for section in sections]
    todo = [index for index, key in enumerate(keys) if key not in kept]
    log.info(
        "checklist drawn by section",
        extra={"sections": len(sections), "kept_sections": len(sections) - len(todo)},
    )
    finished: dict[int, Completion[list[DraftItem]]] = {}
    try:
        call_all(cancel, concurrency, [calls[index] for index in todo], finished, progress, 1)
    except ChainError as err:
        err.keep = {
            keys[todo[i]]: [d.model_dump(mode="json") for d in c.value] for i, c in finished.items()
        }
        err.keep.update(
            {key: [d.model_dump(mode="json") for d in kept[key]] for key in kept if key in keys}
        )
        raise
    new = {todo[i]: c for i, c in finished.items()}
    answers = [
        new[index] if index in new else Completion(kept[keys[index]], Usage(calls_saved=1))
        for index in range(len(sections))
    ]
    per_section = getattr(provider, "max_items", None)
    full = sum(1 for a in answers if per_section is not None and len(a.value) >= per_section)
    merged = _merge(sections, answers)
    left_out = sum(answer.left_out for answer in answers)
    cut = max_items is not None and len(merged) > max_items
    if cut and max_items is not None:
        log.warning(
            "checklist cut at the total cap", extra={"items": len(merged), "kept": max_items}
        )
        left_out += len(merged) - max_items
        merged = merged[:max_items]
    if limit is None:  # one call over the whole text: the provider's cap is the total one
        full, cut = 0, cut or full > 0
    capped = Capped(per_section=full, total=cut) if full or cut else None
    usage = sum((a.usage for a in answers), Usage())
    return Completion((merged, capped), usage, left_out=left_out)

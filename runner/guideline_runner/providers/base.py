"""What the chain needs from a provider: summarize a text (or one part of it), combine
partial summaries, and build a checklist from a summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from guideline_runner.models import DraftItem, Usage

T = TypeVar("T")


@dataclass(frozen=True)
class Completion(Generic[T]):
    """A provider's answer with the tokens it cost."""

    value: T
    usage: Usage
    # Checklist items the provider had but left out for the max_checklist_items cap.
    left_out: int = 0


class Provider(Protocol):
    """A source of summaries and checklists. Errors are raised as `ChainError`."""

    name: str
    model: str
    # Texts longer than this are summarized in parts (map-reduce); None: any length at once.
    max_input_chars: int | None

    def summarize(self, text: str, *, part: int = 1, parts: int = 1) -> Completion[str]:
        """A summary of `text`, which is part `part` of `parts` of one guideline."""
        ...

    def combine(self, summaries: Sequence[str]) -> Completion[str]:
        """One summary from the summaries of consecutive parts of one guideline."""
        ...

    def checklist(self, summary: str, *, guideline: str) -> Completion[list[DraftItem]]:
        """Checklist items built from `summary` (`guideline` is the full original text).
        A provider with `max_input_chars` also takes `section` and `sections` keywords: then
        `guideline` is that section of a long guideline, whose own items are wanted."""
        ...

    def close(self) -> None:
        """Release connections; a call in progress in another thread ends soon after."""
        ...

"""The prompts of the chain's LLM calls."""

from __future__ import annotations

from collections.abc import Sequence

SUMMARIZE_SYSTEM = (
    "You summarize written guidelines (policies, procedures, standards) for the people who "
    "must follow them. Keep every obligation, prohibition, threshold, deadline and "
    "responsible role; drop boilerplate and repetition. Answer with the summary only, as "
    "plain prose, in the guideline's language."
)

COMBINE_SYSTEM = (
    "You merge the summaries of consecutive parts of one guideline into a single coherent "
    "summary. Keep every obligation, prohibition, threshold, deadline and responsible role "
    "from every part; remove repetition. Answer with the summary only, as plain prose."
)

CHECKLIST_SYSTEM = (
    "You turn the summary of a guideline into an actionable checklist. Each item is one "
    "concrete action a person can check off, phrased as an imperative. priority is 'high' "
    "for obligations and prohibitions (must, shall, required, never), 'medium' for "
    "recommendations (should), 'low' for options (may, can). category is a short lowercase "
    "label grouping related items. Give at most {max_items} items. Answer only with JSON "
    "matching the given schema."
)


def summarize_user(text: str, part: int, parts: int) -> str:
    """The user message of a summarize call."""
    if parts > 1:
        intro = f"This is part {part} of {parts} of one guideline. Summarize this part."
    else:
        intro = "Summarize this guideline."
    return f"{intro}\n\n<guideline>\n{text}\n</guideline>"


def combine_user(summaries: Sequence[str]) -> str:
    """The user message of a combine call: the partial summaries in order."""
    parts = "\n\n".join(f"[Part {i}]\n{s}" for i, s in enumerate(summaries, start=1))
    return f"Summaries of the parts, in order:\n\n{parts}"


def checklist_user(summary: str) -> str:
    """The user message of the checklist call: the summary from step 1."""
    return f"Summary of the guideline:\n\n{summary}"

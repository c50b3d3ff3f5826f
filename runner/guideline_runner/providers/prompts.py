"""The prompts of the chain's LLM calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

# Part of the chunk cache's key: change it whenever SUMMARIZE_SYSTEM or summarize_user
# changes what a summary of a part would be, so older summaries are not reused.
SUMMARIZE_PROMPT_VERSION: Final = "summarize-v1"

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
    "concrete action a person can take or check off, phrased as an imperative. Questions, "
    "headings, evidence summaries, background (studies, surveys, statistics) and "
    "statements that no recommendation can be made are not items. priority is 'high' "
    "for obligations and prohibitions (must, shall, required, never), 'medium' for "
    "recommendations (should), 'low' for options (may, can). strength is how the quoted "
    "text words it: 'must', 'must_not', 'should', 'should_not' or 'may'. category is a "
    "short lowercase label grouping related items. quote is the sentence or passage of the "
    "guideline (not of the summary) that the item comes from, copied verbatim: it is "
    "checked against the guideline, and an item whose quote is not there is flagged. Give "
    "at most {max_items} items. Answer only with JSON matching the given schema."
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


def checklist_user(summary: str, guideline: str, section: int = 1, sections: int = 1) -> str:
    """The user message of a checklist call: the summary from step 1, and the guideline
    itself to quote from, or (a long guideline) section `section` of `sections` of it, whose
    own text the items are drawn from."""
    if sections > 1:
        return (
            f"Summary of the whole guideline, for context:\n\n{summary}\n\n"
            f"This is section {section} of {sections} of the guideline. List every action "
            "this section's own text states (not those of the summary alone), each quoting "
            f"this section:\n\n<guideline>\n{guideline}\n</guideline>"
        )
    return (
        f"Summary of the guideline:\n\n{summary}\n\n"
        f"The guideline, to quote from:\n\n<guideline>\n{guideline}\n</guideline>"
    )

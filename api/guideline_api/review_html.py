"""The review page of a job: the guideline with each checklist item's source highlighted
and the obligations no item covers marked, the checklist beside it (click an item to jump
to its passage). One self-contained HTML file (no script, no network), written by
`guideline-client show ID --html`. Pure functions of the job as the API returns it."""

from __future__ import annotations

import html
from itertools import pairwise
from typing import Any, Final

SOURCE_COLOUR: Final = (255, 214, 0)  # a passage an item cites
UNCOVERED_COLOUR: Final = (255, 138, 128)  # an obligation no item covers
_CSS: Final = """
body { font: 15px/1.5 sans-serif; margin: 0; color: #1b1b1b; background: #fff; }
header { padding: 12px 20px; border-bottom: 1px solid #ccc; }
header h1 { font-size: 20px; margin: 0 0 4px; }
.review { color: #a00; font-weight: bold; }
main { display: flex; gap: 24px; padding: 16px 20px; }
#guideline { flex: 3; white-space: pre-wrap; font-family: serif; }
#checklist { flex: 2; }
#checklist ol { padding-left: 22px; }
#checklist li { margin-bottom: 10px; }
#checklist .quote { color: #555; font-style: italic; display: block; }
#checklist .ungrounded { color: #a00; }
mark.source { background: rgb(SOURCE_RGB); color: inherit; }
mark.uncovered { background: rgb(UNCOVERED_RGB); color: inherit; }
mark:target { outline: 3px solid #1565c0; }
""".replace("SOURCE_RGB", ", ".join(map(str, SOURCE_COLOUR))).replace(
    "UNCOVERED_RGB", ", ".join(map(str, UNCOVERED_COLOUR))
)


def _spans(result: dict[str, Any], length: int) -> list[tuple[int, int, str, int | None]]:
    """(start, end, kind, item number) of every source and uncovered obligation."""
    spans: list[tuple[int, int, str, int | None]] = []
    for number, item in enumerate(result.get("checklist") or [], start=1):
        source = item.get("source") if isinstance(item, dict) else None
        if source and 0 <= source["start"] < source["end"] <= length:
            spans.append((source["start"], source["end"], "source", number))
    for passage in (result.get("quality") or {}).get("uncovered") or []:
        if 0 <= passage["start"] < passage["end"] <= length:
            spans.append((passage["start"], passage["end"], "uncovered", None))
    return spans


def highlighted(text: str, result: dict[str, Any]) -> str:
    """`text` as HTML with sources in `<mark class="source">` (the first piece of item N's
    source has id `src-N`) and uncovered obligations in `<mark class="uncovered">`."""
    spans = _spans(result, len(text))
    cuts = sorted({0, len(text), *(s for s, _, _, _ in spans), *(e for _, e, _, _ in spans)})
    anchored: set[int] = set()
    out: list[str] = []
    for start, end in pairwise(cuts):
        piece = html.escape(text[start:end])
        covering = [s for s in spans if s[0] <= start and end <= s[1]]
        sources = [n for _, _, kind, n in covering if kind == "source" and n is not None]
        if sources:
            ids = "".join(f' id="src-{n}"' for n in sources[:1] if n not in anchored)
            anchored.update(sources[:1])
            items = " ".join(map(str, sources))
            out.append(f'<mark class="source"{ids} data-items="{items}">{piece}</mark>')
        elif covering:
            out.append(f'<mark class="uncovered">{piece}</mark>')
        else:
            out.append(piece)
    return "".join(out)


def _checklist(result: dict[str, Any]) -> str:
    rows = []
    for number, item in enumerate(result.get("checklist") or [], start=1):
        text = html.escape(str(item.get("item", "")))
        meta = html.escape(f"{item.get('priority', '')} · {item.get('category', '')}")
        if item.get("source"):
            quote = html.escape(item["source"]["quote"])
            rows.append(
                f'<li><a href="#src-{number}">{text}</a> <small>({meta})</small>'
                f'<span class="quote">“{quote}”</span></li>'
            )
        else:
            rows.append(
                f'<li>{text} <small>({meta})</small><span class="quote ungrounded">'
                "not grounded: its quote is not in the guideline</span></li>"
            )
    return "<ol>" + "".join(rows) + "</ol>"


def review_page(job: dict[str, Any]) -> str:
    """The whole page of a COMPLETED job read with `?include=text`."""
    result = job.get("result") or {}
    text = job.get("guideline_text") or ""
    quality = result.get("quality") or {}
    title = html.escape(job.get("title") or f"Job {job.get('event_id')}")
    facts = (
        f"{quality.get('grounded_items', 0)} of {quality.get('items', 0)} items grounded · "
        f"{quality.get('covered_obligations', 0)} of {quality.get('obligations', 0)} "
        f"obligations covered ({quality.get('coverage', 0):.0%})"
    )
    reasons = (result.get("review") or {}).get("reasons") or []
    review = (
        f'<p class="review">Needs review: {html.escape("; ".join(reasons))}</p>'
        if result.get("needs_review")
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{title}</h1><p>{html.escape(facts)}</p>{review}</header>"
        f'<main><section id="guideline">{highlighted(text, result)}</section>'
        f'<section id="checklist"><h2>Checklist</h2>{_checklist(result)}</section></main>'
        "</body></html>"
    )
